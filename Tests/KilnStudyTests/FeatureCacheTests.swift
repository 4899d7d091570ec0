import Foundation
import Kiln
import KilnData
import KilnModels
import Testing

@testable import KilnStudy

/// The frozen-feature cache and the ridge head in the trainer.
struct FeatureCacheTests {
    let progress: ProgressReporter = {
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        return progress
    }()

    func data(_ dir: URL) throws -> StudyData {
        try StudyData.prepare(root: nil, syntheticPerClass: 6, inputSize: 16, seed: 3, skipBad: false, directory: dir, progress: progress)
    }

    func frozen(augment: Bool, cache: Bool) -> RunConfig {
        var config = RunConfig(model: "basic-cnn", width: 0.25, strategy: .frozen)
        (config.epochs, config.batchSize, config.inputSize, config.learningRate) = (3, 16, 16, 0.05)
        (config.augment, config.featureCache) = (augment, cache)
        return config
    }

    func withDirectory<T>(_ body: (URL) throws -> T) throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cache-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try body(dir)
    }

    /// Without augmentation a cached run sees exactly the uncached run's images: the same losses,
    /// the same test predictions — and it runs the backbone once per image, not once per epoch.
    @Test func aCachedFrozenRunTrainsLikeTheUncachedOne() throws {
        try withDirectory { dir in
            let data = try data(dir)
            var results: [RunResult] = []
            for cache in [false, true] {
                results.append(
                    try Trainer(
                        config: frozen(augment: false, cache: cache), cache: data.cache, split: data.split,
                        directory: dir.appendingPathComponent("run-\(cache)"), progress: progress
                    ).run())
            }
            let (plain, cached) = (results[0], results[1])
            #expect(plain.featureCache == nil)
            for (a, b) in zip(plain.history, cached.history) {
                #expect(abs(a.trainLoss - b.trainLoss) <= 1e-5 * max(1, abs(a.trainLoss)), "epoch \(a.epoch)")
                #expect(abs((a.validationLoss ?? 0) - (b.validationLoss ?? 0)) <= 1e-5)
            }
            #expect(plain.test.confusion == cached.test.confusion)
            let report = try #require(cached.featureCache)
            let images = data.split.train.count + data.split.validation.count + data.split.test.count
            #expect(report.computed == images, "one backbone pass per image (1 variant)")
            #expect(report.reused > 0)
            // The checkpoint holds the whole model, backbone included.
            let (tensors, _) = try Safetensors.read(dir.appendingPathComponent("run-true/checkpoint.safetensors"))
            #expect(tensors.contains { $0.0 == "blocks.0.conv.weight" })
        }
    }

    /// Runs sharing a cache (a sweep) compute each entry once; other weights invalidate it.
    @Test func aSharedCacheIsReusedAndInvalidatedByOtherWeights() throws {
        try withDirectory { dir in
            let data = try data(dir)
            let shared = FeatureCache()
            var config = frozen(augment: true, cache: true)
            config.cacheVariants = 4
            let first = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("a"), progress: progress,
                featureCache: shared
            ).run()
            config.learningRate = 0.01
            let second = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("b"), progress: progress,
                featureCache: shared
            ).run()
            #expect(first.featureCache!.computed > 0)
            #expect(second.featureCache!.computed <= first.featureCache!.computed)
            #expect(second.featureCache!.reused > first.featureCache!.reused)
            let entries = shared.count
            config.seed = 7  // other initial (frozen) weights: another signature
            let third = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("c"), progress: progress,
                featureCache: shared
            ).run()
            #expect(third.featureCache!.computed > 0)
            #expect(shared.count <= entries + third.featureCache!.computed)
        }
    }

    /// The closed-form head solves its normal equations and beats chance on separable data.
    @Test func ridgeHeadSolvesItsNormalEquations() throws {
        let (n, d, classes) = (60, 5, 3)
        var x = [Float](repeating: 0, count: n * d), labels = [Int](repeating: 0, count: n)
        var state: UInt64 = 1
        for i in 0..<n {
            labels[i] = i % classes
            for j in 0..<d {
                state = state &* 6_364_136_223_846_793_005 &+ 1
                x[i * d + j] = Float(state >> 40) / Float(1 << 24) + (j == labels[i] ? 2 : 0)
            }
        }
        let normal = try RidgeHead.Normal(x, labels: labels, classes: classes)
        let head = try normal.solve(relative: 0.01)
        // (G + λI) W = R, checked in double from the stored G (upper triangle) and R.
        let trace = (0..<d).reduce(0.0) { $0 + normal.gram[$1 * d + $1] }
        let lambda = 0.01 * trace / Double(d)
        for c in 0..<classes {
            for r in 0..<d {
                var lhs = lambda * Double(head.weight[c * d + r])
                for j in 0..<d { lhs += normal.gram[min(r, j) * d + max(r, j)] * Double(head.weight[c * d + j]) }
                #expect(abs(lhs - normal.rhs[r * classes + c]) < 1e-3 * max(1, abs(normal.rhs[r * classes + c])))
            }
        }
        let correct = (0..<n).filter { i in
            let scores = (0..<classes).map { c in (0..<d).reduce(head.bias[c]) { $0 + head.weight[c * d + $1] * x[i * d + $1] } }
            return scores.indices.max { scores[$0] < scores[$1] } == labels[i]
        }.count
        #expect(correct >= n * 9 / 10, "\(correct) of \(n)")
    }

    @Test func ridgeRunFitsTheClassifierInClosedForm() throws {
        try withDirectory { dir in
            let data = try data(dir)
            var config = frozen(augment: true, cache: true)
            config.head = "ridge"
            let result = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("ridge"), progress: progress
            ).run()
            #expect(result.history.count == 1)
            #expect(result.config.label.hasSuffix("· ridge"))
            #expect(RidgeHead.relativeLambdas.contains(result.history[0].learningRate))
            #expect(result.test.count == data.split.test.count)
        }
    }
}
