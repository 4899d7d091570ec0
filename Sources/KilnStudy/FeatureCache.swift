import Dispatch
import Foundation
import Kiln
import KilnData

/// Boundary activations of a frozen, deterministic prefix (`FrozenBoundary`), memoised per
/// (image, augmentation variant): once every variant an epoch draws is cached, the epoch costs
/// only the head. Valid for one `signature` — the model, the frozen weights' fingerprint, the
/// input size, the preprocessing and the variant set; a trainer with another signature resets it.
/// Bounded: a run whose features would not fit in `limitBytes` does not use it (and says so).
public final class FeatureCache: @unchecked Sendable {
    public let limitBytes: Int
    public private(set) var signature: String = ""
    private var entries: [String: [Float]] = [:]
    private let lock = NSLock()

    /// Entries computed since creation (across runs sharing the cache), and the seconds that took.
    public private(set) var computed = 0
    public private(set) var computeSeconds = 0.0

    public init(limitBytes: Int = 4 << 30) { self.limitBytes = limitBytes }

    public var count: Int { lock.withLock { entries.count } }
    public var bytes: Int { lock.withLock { entries.values.reduce(0) { $0 + $1.count * 4 } } }

    /// Empties the cache unless it already holds features for `signature`; true when it did.
    func adopt(_ signature: String) -> Bool {
        lock.withLock {
            guard signature != self.signature else { return true }
            entries.removeAll()
            self.signature = signature
            return false
        }
    }

    static func key(_ id: String, _ variant: Int) -> String { "\(variant)|\(id)" }

    func lookup(_ id: String, _ variant: Int) -> [Float]? { lock.withLock { entries[Self.key(id, variant)] } }

    func store(_ id: String, _ variant: Int, _ features: [Float]) {
        lock.withLock { entries[Self.key(id, variant)] = features }
    }

    func record(computed n: Int, seconds: Double) {
        lock.withLock {
            computed += n
            computeSeconds += seconds
        }
    }
}

/// What a cached run reports: how much of the cache it used and what that saved.
public struct FeatureCacheReport: Codable, Sendable {
    /// The boundary values and the variants drawn from (`dihedral` transforms of the centre crop).
    public var boundary: [String]
    public var variants: Int
    /// Entries this run computed and reused, and the cache's size after it.
    public var computed: Int
    public var reused: Int
    public var megabytes: Double
    /// Seconds this run spent in the frozen prefix, and the estimate of what reuse saved
    /// (reused entries × the measured seconds per computed entry).
    public var computeSeconds: Double
    public var secondsSaved: Double
}

/// Feeds a head-only `TrainStep` from a `FeatureCache`: picks each training image's variant for
/// the epoch, computes the entries not cached yet through the frozen prefix (eval-mode graph of
/// the boundary values), and assembles batches of features.
final class FeatureFeeder: @unchecked Sendable {
    let boundary: FrozenBoundary
    let cache: FeatureCache
    let images: ImageCache
    let model: any Layer
    let parameters: ParameterStore
    let inputSize: Int
    let normalization: Transform
    let variants: Int
    let seed: UInt64
    let labels: [String: Int]
    private var extractors: [Int: Executor] = [:]
    private(set) var computed = 0, reused = 0
    private(set) var computeSeconds = 0.0

    init(
        boundary: FrozenBoundary, cache: FeatureCache, images: ImageCache, model: any Layer, parameters: ParameterStore,
        config: RunConfig, variants: Int
    ) {
        (self.boundary, self.cache, self.images, self.model, self.parameters) = (boundary, cache, images, model, parameters)
        (inputSize, normalization, self.variants, seed) = (config.inputSize, config.normalization, variants, config.seed)
        labels = Dictionary(uniqueKeysWithValues: images.dataset.samples.map { ($0.id, $0.label) })
    }

    /// The variant image `id` is seen in at `epoch` (uniform, reproducible).
    func variant(_ id: String, epoch: Int) -> Int {
        var rng = SplitMix(seed: seed ^ UInt64(epoch + 1) &* 0xA24B_AED4_963E_E407 ^ fnv1a(id))
        return Int(rng.next() % UInt64(variants))
    }

    /// A training batch: each image in its variant for the epoch.
    func trainingBatch(_ ids: [String], epoch: Int) throws -> (feeds: [String: Tensor], labels: Tensor) {
        try batch(ids, variants: ids.map { variant($0, epoch: epoch) })
    }

    /// An evaluation batch: variant 0, the centre crop (what the uncached evaluation sees).
    func evaluationBatch(_ ids: [String]) throws -> (feeds: [String: Tensor], labels: Tensor) {
        try batch(ids, variants: [Int](repeating: 0, count: ids.count))
    }

    func batch(_ ids: [String], variants chosen: [Int]) throws -> (feeds: [String: Tensor], labels: Tensor) {
        var rows = zip(ids, chosen).map { cache.lookup($0, $1) }
        let missing = rows.indices.filter { rows[$0] == nil }
        reused += ids.count - missing.count
        if !missing.isEmpty {
            let start = DispatchTime.now().uptimeNanoseconds
            let computedRows = try extract(missing.map { (ids[$0], chosen[$0]) })
            for (k, i) in missing.enumerated() {
                rows[i] = computedRows[k]
                cache.store(ids[i], chosen[i], computedRows[k])
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            computed += missing.count
            computeSeconds += seconds
            cache.record(computed: missing.count, seconds: seconds)
        }
        var feeds: [String: Tensor] = [:]
        var offset = 0
        for (name, shape) in zip(boundary.values, boundary.sampleShapes) {
            let tensor = Tensor(zeros: Shape([ids.count] + shape.dims))
            for (i, row) in rows.enumerated() {
                row!.withUnsafeBufferPointer { src in
                    (tensor.floats + i * shape.count).update(from: src.baseAddress! + offset, count: shape.count)
                }
            }
            feeds[name] = tensor
            offset += shape.count
        }
        return (feeds, Tensor(shape: [ids.count], int64s: ids.map { Int64(labels[$0]!) }))
    }

    /// Runs the frozen prefix on the images (centre crop, dihedral variant, normalisation) and
    /// returns each one's boundary values, concatenated in boundary order. Batches are split into
    /// powers of two (13 = 8 + 4 + 1), so a run compiles at most log₂(batch) + 1 extractors
    /// however many entries each batch misses.
    func extract(_ items: [(id: String, variant: Int)]) throws -> [[Float]] {
        var rows: [[Float]] = []
        var start = 0
        while start < items.count {
            var size = 1
            while size * 2 <= items.count - start { size *= 2 }
            rows += try extractChunk(Array(items[start..<(start + size)]))
            start += size
        }
        return rows
    }

    private func extractChunk(_ items: [(id: String, variant: Int)]) throws -> [[Float]] {
        let pictures = Locked([FloatImage?](repeating: nil, count: items.count))
        DispatchQueue.concurrentPerform(iterations: items.count) { i in
            var rng = SplitMix(seed: 0)
            let steps: [Transform] = [.centerCrop(inputSize), .dihedral(items[i].variant), normalization]
            let image = steps.reduce(FloatImage(images.images[items[i].id]!)) { $1.apply($0, rng: &rng) }
            pictures.mutate { $0[i] = image }
        }
        let input = Tensor(zeros: [items.count, 3, inputSize, inputSize])
        let plane = 3 * inputSize * inputSize
        for (i, image) in pictures.value.enumerated() { image!.writeCHW(to: input.floats + i * plane) }
        let executor = try extractor(batch: items.count)
        let outputs = try executor.run(["input": input])
        return (0..<items.count).map { i in
            boundary.values.enumerated().flatMap { k, name in
                let count = boundary.sampleShapes[k].count
                return Array(UnsafeBufferPointer(start: outputs[name]!.floats + i * count, count: count))
            }
        }
    }

    private func extractor(batch: Int) throws -> Executor {
        if let executor = extractors[batch] { return executor }
        let graph = try Compiler.features(model, input: [batch, 3, inputSize, inputSize], values: boundary.values)
        let executor = try Executor(graph: graph, parameters: parameters, mode: .inference, constantWeights: true)
        extractors[batch] = executor
        return executor
    }

    /// What the cache's contents depend on besides the images: the run's model and
    /// preprocessing, the boundary, and the frozen prefix's weights (their bits hashed).
    static func signature(_ config: RunConfig, boundary: FrozenBoundary, parameters: ParameterStore, variants: Int) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for name in boundary.prefixState {
            guard let tensor = parameters[name] else { continue }
            let words = tensor.count * tensor.dtype.byteSize / 4
            let p = tensor.data.assumingMemoryBound(to: UInt32.self)
            for i in 0..<words { hash = (hash ^ UInt64(p[i])) &* 0x0000_0100_0000_01B3 }
            hash ^= fnv1a(name)
        }
        return [
            config.model, config.width.map { "\($0)" } ?? "-", "\(config.inputSize)", "\(config.normalization)",
            boundary.values.joined(separator: ","), "\(variants)", String(hash, radix: 16),
        ].joined(separator: "|")
    }
}
