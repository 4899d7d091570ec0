import Dispatch
import Foundation
import Kiln

/// Decoded images kept in memory as 8-bit RGB, decoded once in parallel. Images whose shorter
/// side differs from `baseSize` are resized to it (UC Merced has a few off-size images), so
/// every epoch only crops, flips and normalises.
public final class ImageCache: @unchecked Sendable {
    public let dataset: ImageDataset
    public private(set) var images: [String: RGBImage] = [:]
    /// Images that failed to decode (only with `skipBad`; otherwise the first failure is thrown).
    public private(set) var failures: [ImageError] = []

    public init(_ dataset: ImageDataset, ids: [String], baseSize: Int?, skipBad: Bool) throws {
        self.dataset = dataset
        let byID = Dictionary(uniqueKeysWithValues: dataset.samples.map { ($0.id, $0) })
        let results = Locked([String: RGBImage]()), errors = Locked([ImageError]()), other = Locked<Error?>(nil)
        DispatchQueue.concurrentPerform(iterations: ids.count) { i in
            do {
                guard let sample = byID[ids[i]] else { throw DatasetError("sample '\(ids[i])' is not in \(dataset.name)") }
                var image = try dataset.load(sample)
                if let baseSize, min(image.width, image.height) != baseSize { image = ImageCache.resize(image, shorterSide: baseSize) }
                results.mutate { $0[ids[i]] = image }
            } catch let error as ImageError {
                errors.mutate { $0.append(error) }
            } catch {
                other.mutate { $0 = error }
            }
        }
        if let error = other.value { throw error }
        let sorted = errors.value.sorted { $0.file < $1.file }
        if let first = sorted.first, !skipBad { throw first }
        images = results.value
        failures = sorted
    }

    static func resize(_ image: RGBImage, shorterSide: Int) -> RGBImage {
        var rng = SplitMix(seed: 0)
        let resized = Transform.resize(shorterSide).apply(FloatImage(image), rng: &rng)
        return RGBImage(
            width: resized.width, height: resized.height, pixels: resized.pixels.map { UInt8(min(255, max(0, ($0 * 255).rounded()))) })
    }
}

/// Batches of (images [B, 3, S, S] float32, labels [B] int64) from an `ImageCache`. Order and
/// augmentation are deterministic by (seed, epoch, position), whatever the thread timing. The
/// next batch is assembled on a background queue (its images in parallel) while the caller
/// trains on the current one.
public final class DataLoader: @unchecked Sendable {
    public let cache: ImageCache
    public let ids: [String]
    public let batchSize: Int
    public let transforms: [Transform]
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    /// This rank's share of every epoch (data-parallel training), or nil for all of it.
    public let shard: Shard?
    let labels: [String: Int]

    /// DistributedSampler's split of an epoch: the permutation is the same on every rank (same
    /// seed), padded by repeating its start to a multiple of `ranks`, and rank r takes positions
    /// r, r + ranks, … So every rank has as many batches, and the ranks' k-th batches together
    /// are the k-th global batch of `batchSize × ranks` samples.
    public struct Shard: Sendable {
        public let rank: Int
        public let ranks: Int
        public init(rank: Int, ranks: Int) { (self.rank, self.ranks) = (rank, ranks) }
    }

    /// - Parameter batchSize: per rank when `shard` is set.
    public init(
        cache: ImageCache, ids: [String], batchSize: Int, transforms: [Transform], shuffle: Bool, dropLast: Bool = false, seed: UInt64 = 0,
        shard: Shard? = nil
    ) {
        self.cache = cache
        self.ids = ids.filter { cache.images[$0] != nil }
        self.batchSize = batchSize
        self.transforms = transforms
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.shard = shard
        labels = Dictionary(uniqueKeysWithValues: cache.dataset.samples.map { ($0.id, $0.label) })
    }

    /// Samples per epoch (this rank's, padding included, when sharded).
    public var count: Int { shard.map { (ids.count + $0.ranks - 1) / $0.ranks } ?? ids.count }
    public var batchCount: Int { dropLast ? count / batchSize : (count + batchSize - 1) / batchSize }

    /// The samples of one epoch, in order (this rank's share when sharded).
    public func order(epoch: Int) -> [String] {
        var all = ids
        if shuffle {
            var rng = SplitMix(seed: seed ^ UInt64(epoch + 1) &* 0x9E37_79B9_7F4A_7C15)
            all.shuffle(using: &rng)
        }
        guard let shard, shard.ranks > 1, !all.isEmpty else { return all }
        let padded = (0..<(count * shard.ranks)).map { all[$0 % all.count] }
        return stride(from: shard.rank, to: padded.count, by: shard.ranks).map { padded[$0] }
    }

    public func batches(epoch: Int) -> AnyIterator<(images: Tensor, labels: Tensor, ids: [String])> {
        let order = order(epoch: epoch)
        let total = batchCount
        var index = 0
        var pending: Prefetch? = total > 0 ? prefetch(order, batch: 0, epoch: epoch) : nil
        return AnyIterator {
            guard index < total, let current = pending else { return nil }
            let result = current.wait()
            index += 1
            pending = index < total ? self.prefetch(order, batch: index, epoch: epoch) : nil
            return result
        }
    }

    final class Prefetch: @unchecked Sendable {
        let group = DispatchGroup()
        var result: (images: Tensor, labels: Tensor, ids: [String])!
        func wait() -> (images: Tensor, labels: Tensor, ids: [String]) { group.wait(); return result }
    }

    func prefetch(_ order: [String], batch: Int, epoch: Int) -> Prefetch {
        let job = Prefetch()
        job.group.enter()
        DispatchQueue.global(qos: .userInitiated).async {
            job.result = self.assemble(order, batch: batch, epoch: epoch)
            job.group.leave()
        }
        return job
    }

    func assemble(_ order: [String], batch: Int, epoch: Int) -> (images: Tensor, labels: Tensor, ids: [String]) {
        let chunk = Array(order[(batch * batchSize)..<min(order.count, (batch + 1) * batchSize)])
        let transformed = Locked([FloatImage?](repeating: nil, count: chunk.count))
        DispatchQueue.concurrentPerform(iterations: chunk.count) { i in
            var rng = SplitMix(seed: seed ^ UInt64(epoch) << 32 ^ UInt64(batch * batchSize + i) &* 0xD1B5_4A32_D192_ED03)
            let image = transforms.reduce(FloatImage(cache.images[chunk[i]]!)) { $1.apply($0, rng: &rng) }
            transformed.mutate { $0[i] = image }
        }
        let results = transformed.value.map { $0! }
        let first = results[0]
        let images = Tensor(zeros: [chunk.count, 3, first.height, first.width])
        let labels = Tensor(shape: [chunk.count], int64s: chunk.map { Int64(self.labels[$0]!) })
        let plane = 3 * first.height * first.width
        for (i, image) in results.enumerated() {
            precondition(image.width * image.height * 3 == plane, "transforms must produce one size for a batch")
            image.writeCHW(to: images.floats + i * plane)
        }
        return (images, labels, chunk)
    }
}

/// A value behind a lock, for results gathered by concurrent workers.
public final class Locked<Value>: @unchecked Sendable {
    private var stored: Value
    private let lock = NSLock()
    public init(_ value: Value) { stored = value }
    public var value: Value { lock.withLock { stored } }
    public func mutate(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
