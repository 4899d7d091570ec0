import Foundation
import Kiln
import KilnModels
import Testing

/// Data-parallel training through `TrainStep` with ranks as threads (`LocalCommunicatorGroup`):
/// with synchronised BatchNorm, R ranks each on 1/R of the batch take the steps one process takes
/// on the whole batch.
struct DataParallelTests {
    static let batch = 16

    func configuration(_ parallel: DataParallel? = nil, trainOnly: [String]? = nil) -> TrainStep.Configuration {
        var configuration = TrainStep.Configuration(
            optimizer: .sgd(.init(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4)), trainOnly: trainOnly, seed: 3)
        configuration.dataParallel = parallel
        return configuration
    }

    /// Three global batches of images in [-1, 1] and labels, the last half as large.
    func batches(side: Int, classes: Int) -> [(images: Tensor, labels: Tensor)] {
        var state: UInt64 = 11
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        return [Self.batch, Self.batch, Self.batch / 2].map { rows in  // the last batch smaller, as an epoch's often is
            let x = Tensor(zeros: [rows, 3, side, side])
            for i in 0..<x.count { x.floats[i] = Float(next() % 2001) / 1000 - 1 }
            return (x, Tensor(shape: [rows], int64s: (0..<rows).map { _ in Int64(next() % UInt64(classes)) }))
        }
    }

    /// Rows `rank`, `rank + ranks`, … of a batch (DistributedSampler's shard).
    func shard(_ t: Tensor, rank: Int, ranks: Int) -> Tensor {
        let rows = t.shape[0] / ranks, perRow = t.count / t.shape[0], bytes = perRow * t.dtype.byteSize
        let out = Tensor(zeros: Shape([rows] + t.shape.dims.dropFirst()), dtype: t.dtype)
        for r in 0..<rows { (out.data + r * bytes).copyMemory(from: t.data + (rank + r * ranks) * bytes, byteCount: bytes) }
        return out
    }

    /// The state (parameters, buffers, optimizer slots) after the steps, by name, one per rank.
    func train(_ model: @escaping @Sendable () -> any Layer, side: Int, ranks: Int?, synchronizeBN: Bool = true, trainOnly: [String]? = nil)
        throws -> [[String: [Float]]]
    {
        try trajectories(model, side: side, ranks: ranks, synchronizeBN: synchronizeBN, trainOnly: trainOnly).map { $0.last! }
    }

    /// The state after each step, per rank. With `starts`, step i > 0 begins from starts[i − 1] (loaded
    /// on every rank) instead of from the step before it.
    func trajectories(
        _ model: @escaping @Sendable () -> any Layer, side: Int, ranks: Int?, synchronizeBN: Bool = true, trainOnly: [String]? = nil,
        starts: [[String: [Float]]]? = nil
    ) throws -> [[[String: [Float]]]] {
        let data = batches(side: side, classes: 5)
        @Sendable func run(_ parallel: DataParallel?, rank: Int, ranks: Int) throws -> [[String: [Float]]] {
            let step = try TrainStep(
                model: model(), inputShape: [Self.batch / ranks, 3, side, side],
                configuration: configuration(parallel, trainOnly: trainOnly))
            let names = step.graph.persistentValues.filter { $0.dtype == .float32 }.map(\.name)
            var states: [[String: [Float]]] = []
            for (i, (x, y)) in data.enumerated() {
                if let starts, i > 0 {
                    for (name, values) in starts[i - 1] { step.parameters[name]!.floats.update(from: values, count: values.count) }
                }
                try step.run(images: shard(x, rank: rank, ranks: ranks), labels: shard(y, rank: rank, ranks: ranks))
                states.append(Dictionary(uniqueKeysWithValues: names.map { ($0, step.parameters[$0]!.scalars) }))
            }
            return states
        }
        guard let ranks else { return [try run(nil, rank: 0, ranks: 1)] }
        return try LocalCommunicatorGroup(size: ranks).run { rank, communicator in
            try run(DataParallel(communicator: communicator, synchronizesBatchNorm: synchronizeBN), rank: rank, ranks: ranks)
        }
    }

    func expectClose(_ a: [String: [Float]], _ b: [String: [Float]], tolerance: Float = 1e-5, _ what: String) {
        #expect(a.keys.sorted() == b.keys.sorted())
        for (name, expected) in b {
            guard let actual = a[name] else { continue }
            let scale = max(expected.map(abs).max() ?? 0, 1e-6)
            let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(error <= tolerance * scale, "\(what): \(name) differs by \(error) (scale \(scale))")
        }
    }

    @Test(arguments: [2, 4])
    func synchronisedRanksTakeTheSingleProcessStepsOnTheBasicCNN(ranks: Int) throws {
        let model: @Sendable () -> any Layer = { BasicCNN(classes: 5, channels: [8, 16]) }
        let single = try train(model, side: 16, ranks: nil)[0]
        let ranked = try train(model, side: 16, ranks: ranks)
        for state in ranked.dropFirst() { #expect(state == ranked[0], "every rank holds the same state") }
        expectClose(ranked[0], single, "basic-cnn, \(ranks) ranks")
    }

    /// Step by step: each ranked step starts from the single process's state before it. Ranks sum a
    /// gradient in another order than one process; over several steps that rounding can move a
    /// value across a ReLU or max-pool kink and the trajectories part for good (with layer4's 2×2
    /// maps, one flip is a visible jump) — a fact about float sums, not a fault. From a shared
    /// state, each step must still agree to rounding.
    @Test(arguments: [2, 4])
    func synchronisedRanksTakeTheSingleProcessStepsOnResNet18(ranks: Int) throws {
        let model: @Sendable () -> any Layer = { ResNet18(classes: 5, width: 8) }
        let single = try trajectories(model, side: 64, ranks: nil)[0]
        let ranked = try trajectories(model, side: 64, ranks: ranks, starts: single)
        for (rank, states) in ranked.enumerated().dropFirst() {
            let same = states == ranked[0]
            #expect(same, "rank \(rank) holds other states than rank 0")
        }
        for (step, (state, expected)) in zip(ranked[0], single).enumerated() {
            expectClose(state, expected, "resnet18, \(ranks) ranks, step \(step + 1)")
        }
    }

    /// Without synchronised BN each rank normalises with its own half: the ranks still agree (same
    /// averaged gradients, rank 0's running statistics) but differ from one process.
    @Test func perRankBatchNormKeepsRanksEqualButIsNotTheSingleProcessStep() throws {
        let model: @Sendable () -> any Layer = { BasicCNN(classes: 5, channels: [8, 16]) }
        let single = try train(model, side: 16, ranks: nil)[0]
        let ranked = try train(model, side: 16, ranks: 2, synchronizeBN: false)
        let weights = ranked[0].keys.filter { !$0.hasPrefix("optimizer.") && !$0.contains("running") }
        for name in weights { #expect(ranked[1][name] == ranked[0][name], "\(name) differs between ranks") }
        let differs = weights.contains { name in zip(ranked[0][name]!, single[name]!).contains { abs($0 - $1) > 1e-4 * max(abs($1), 1) } }
        #expect(differs, "per-rank statistics should change the steps")
    }

    /// Frozen parameters are never sent: only the head's gradients travel.
    @Test func onlyTrainableGradientsAreCommunicated() throws {
        let stats = try LocalCommunicatorGroup(size: 2).run { rank, communicator in
            let step = try TrainStep(
                model: ResNet18(classes: 5, width: 8), inputShape: [4, 3, 32, 32],
                configuration: configuration(DataParallel(communicator: communicator), trainOnly: ["fc"]))
            let data = batches(side: 32, classes: 5)[0]
            try step.run(images: shard(data.images, rank: rank, ranks: 4), labels: shard(data.labels, rank: rank, ranks: 4))
            return step.communicationStatistics
        }
        let fcBytes = (64 * 5 + 5) * 4
        #expect(stats[0].bytes == fcBytes && stats[0].steps == 1 && stats[0].buckets == 1)
    }

    /// A rank that fails wakes the others instead of leaving them in a collective forever.
    @Test func aFailingRankEndsTheGroup() throws {
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            _ = try LocalCommunicatorGroup(size: 3).run { rank, communicator -> Int in
                if rank == 1 { throw Boom() }
                var values = [1.0]
                try communicator.allReduceSum(&values)  // would wait for rank 1 forever
                return 0
            }
        }
    }

    @Test func collectivesSumAndBroadcastInRankOrder() throws {
        let results = try LocalCommunicatorGroup(size: 4).run { rank, communicator -> ([Double], [Float]) in
            var sums = [Double(rank), 1, 0.1 * Double(rank)]
            try communicator.allReduceSum(&sums)
            let tensor = Tensor(shape: [2], values: [Float(rank), Float(rank) * 2])
            try communicator.broadcast([tensor], root: 2)
            return (sums, tensor.scalars)
        }
        for (sums, broadcast) in results {
            #expect(sums[0] == 6 && sums[1] == 4)
            #expect(sums[2] == results[0].0[2])
            #expect(broadcast == [2, 4])
        }
    }
}
