import Foundation
import Kiln
import Testing
@testable import KilnData

struct DatasetTests {
    /// root/<class>/<image>.jpg for 3 classes × `perClass`, plus optional corrupt files.
    func makeFolder(perClass: Int, corrupt: Bool = false) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-folder-\(UUID())")
        for (label, name) in ["forest", "river", "runway"].enumerated() {
            let dir = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for i in 0..<perClass {
                try ImageDecoder.write(
                    SyntheticLandUse.render(label: [7, 16, 17][label], index: i, size: 24, seed: 1),
                    to: dir.appendingPathComponent("\(name)\(i).jpg"), format: .jpeg)
            }
        }
        try Data("notes".utf8).write(to: root.appendingPathComponent("forest/README.txt"))
        if corrupt { try Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]).write(to: root.appendingPathComponent("river/broken.jpg")) }
        return root
    }

    @Test func imageFolderScansClassesAndImages() throws {
        let root = try makeFolder(perClass: 4)
        defer { try? FileManager.default.removeItem(at: root) }
        let dataset = try ImageFolder.scan(root)
        #expect(dataset.classes == ["forest", "river", "runway"])
        #expect(dataset.samples.count == 12)
        #expect(dataset.samples.first?.id == "forest/forest0.jpg")
        #expect(throws: DatasetError.self) { try ImageFolder.scan(root.appendingPathComponent("missing")) }
    }

    @Test func corruptImagesStopTheLoadOrAreSkippedAndReported() throws {
        let root = try makeFolder(perClass: 3, corrupt: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let dataset = try ImageFolder.scan(root)
        do {
            _ = try ImageCache(dataset, ids: dataset.samples.map(\.id), baseSize: nil, skipBad: false)
            Issue.record("loaded a corrupt JPEG")
        } catch let error as ImageError {
            #expect(error.file.hasSuffix("river/broken.jpg"))
        }
        let cache = try ImageCache(dataset, ids: dataset.samples.map(\.id), baseSize: 16, skipBad: true)
        #expect(cache.failures.map { URL(fileURLWithPath: $0.file).lastPathComponent } == ["broken.jpg"])
        #expect(cache.images.count == 9)
        #expect(cache.images.values.allSatisfy { $0.width == 16 && $0.height == 16 })
    }

    @Test func stratifiedSplitIsSeededSavedAndNested() throws {
        let dataset = SyntheticLandUse.dataset(perClass: 20, size: 16, seed: 1)
        let split = DataSplit.stratified(dataset, seed: 7)
        #expect(split.train.count == 21 * 14 && split.validation.count == 21 * 2 && split.test.count == 21 * 4)
        #expect(Set(split.train).isDisjoint(with: split.test) && Set(split.train).isDisjoint(with: split.validation))
        #expect(DataSplit.stratified(dataset, seed: 7).train == split.train)
        #expect(DataSplit.stratified(dataset, seed: 8).train != split.train)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try split.write(to: url)
        #expect(try DataSplit.read(url).test == split.test)
        let labels = Dictionary(uniqueKeysWithValues: dataset.samples.map { ($0.id, $0.label) })
        let quarter = split.trainingSubset(0.25, labels: labels), half = split.trainingSubset(0.5, labels: labels)
        #expect(quarter.count == 21 * 4 && half.count == 21 * 7)
        #expect(Set(quarter).isSubset(of: Set(half)))
        #expect(Set(quarter.map { labels[$0]! }).count == 21)
    }

    @Test func loaderIsDeterministicAndCoversEachSampleOnce() throws {
        let dataset = SyntheticLandUse.dataset(perClass: 3, size: 20, seed: 2)
        let ids = dataset.samples.map(\.id)
        let cache = try ImageCache(dataset, ids: ids, baseSize: nil, skipBad: false)
        let transforms: [Transform] = [.randomCrop(16), .randomHorizontalFlip, .randomRotation90, .imageNetNormalization]
        let loader = DataLoader(cache: cache, ids: ids, batchSize: 8, transforms: transforms, shuffle: true, seed: 5)
        let a = Array(loader.batches(epoch: 0)), b = Array(loader.batches(epoch: 0)), c = Array(loader.batches(epoch: 1))
        #expect(a.count == 8)  // 63 samples, batch 8
        #expect(a[0].images.shape == [8, 3, 16, 16] && a.last!.images.shape == [7, 3, 16, 16])
        #expect(Set(a.flatMap(\.ids)) == Set(ids) && a.flatMap(\.ids).count == ids.count)
        #expect(zip(a, b).allSatisfy { $0.images.scalars == $1.images.scalars && $0.labels.int64Scalars == $1.labels.int64Scalars })
        #expect(a.flatMap(\.ids) != c.flatMap(\.ids))
        let labels = Dictionary(uniqueKeysWithValues: dataset.samples.map { ($0.id, Int64($0.label)) })
        #expect(a.allSatisfy { batch in batch.ids.map { labels[$0]! } == batch.labels.int64Scalars })
    }

    /// DistributedSampler's split: 63 samples over 4 ranks pad to 64 (the permutation's first
    /// sample again); each rank gets 16 in 4 batches of 4, the ranks' k-th batches interleave the
    /// single process's k-th batch of 16, and every sample is used.
    @Test func shardsSplitTheEpochPermutationLikeDistributedSampler() throws {
        let dataset = SyntheticLandUse.dataset(perClass: 3, size: 8, seed: 2)
        let ids = dataset.samples.map(\.id)
        let cache = try ImageCache(dataset, ids: ids, baseSize: nil, skipBad: false)
        let whole = DataLoader(cache: cache, ids: ids, batchSize: 16, transforms: [], shuffle: true, seed: 5).order(epoch: 3)
        let shards = (0..<4).map {
            DataLoader(cache: cache, ids: ids, batchSize: 4, transforms: [], shuffle: true, seed: 5, shard: .init(rank: $0, ranks: 4))
        }
        #expect(shards.allSatisfy { $0.count == 16 && $0.batchCount == 4 })
        let orders = shards.map { $0.order(epoch: 3) }
        for k in 0..<4 {
            let interleaved = (0..<4).flatMap { position in (0..<4).map { orders[$0][k * 4 + position] } }
            #expect(interleaved == Array((whole + [whole[0]])[(k * 16)..<(k * 16 + 16)]), "global batch \(k)")
        }
        #expect(Set(orders.joined()) == Set(ids))
        let unsharded = DataLoader(
            cache: cache, ids: ids, batchSize: 4, transforms: [], shuffle: true, seed: 5, shard: .init(rank: 0, ranks: 1))
        #expect(unsharded.order(epoch: 3) == whole)
    }
}
