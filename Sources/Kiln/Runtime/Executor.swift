import CKernels
import Dispatch
import Foundation

/// Runs a planned step: walks the schedule, each node reading and writing views into one arena
/// allocated at construction (see `Plan`). Parameters, buffers and optimizer state come from the
/// `ParameterStore`; final gradients live in their own store.
public final class Executor {
    public let graph: Graph
    public let mode: Mode
    public let parameters: ParameterStore
    public let plan: Plan
    private let arena: Arena
    private var slots: [Tensor?]
    private var runs: UInt64 = 0
    /// When non-nil, each run adds every step's wall time (seconds) under its node name.
    public var stepTimes: [String: Double]?
    /// Check every node's float outputs after it runs and stop at the first that holds NaN or
    /// infinity (`ExecutionError.nonFinite` names it). Off by default: it reads every output once.
    public var checksFiniteness = false
    private let seed: UInt64
    /// Data-parallel training: the gradient allreduce (set by `TrainStep`).
    var gradientBuckets: GradientBuckets?
    /// Ranks whose batches training-mode BatchNorm normalises over together (set by `TrainStep`).
    var batchNormGroup: (any Communicator)?
    /// Per node, what its op derived from constant weights (nil unless `constantWeights`).
    private let derived: [DerivedWeights?]

    /// - Parameters:
    ///   - graph: the compiled graph to run.
    ///   - parameters: its parameters, buffers and optimizer state (validated against the graph).
    ///   - mode: inference or training (BN statistics, dropout).
    ///   - seed: of stochastic kernels (dropout), mixed with the run count.
    ///   - keep: activations that must survive the run beyond the outputs (forward-hook style inspection).
    ///   - verify: run `PlanVerifier` first (on by default in debug builds).
    ///   - constantWeights: the parameters will not change while this executor lives (a deployed
    ///     model, a frozen feature extractor): ops may derive from them once (fold BN into the
    ///     convs, transform filters) and reuse it on every run. In a training executor: the
    ///     parameters and buffers it does not train (a frozen backbone's) will not change, so the
    ///     nodes that read no trainable parameter derive once. Not for an inference executor that
    ///     shares its store with training. Prepared filters can make another algorithm pay (Winograd
    ///     on small maps at small batches), so results agree with an executor that derives per run
    ///     to float rounding, not always bit for bit.
    public init(
        graph: Graph, parameters: ParameterStore, mode: Mode = .inference,
        keep: Set<String> = [], seed: UInt64 = 0, verify: Bool = Executor.verifyByDefault, constantWeights: Bool = false
    ) throws {
        try parameters.validate(against: graph)
        self.graph = graph
        self.mode = mode
        self.parameters = parameters
        self.seed = seed
        derived = graph.nodes.map { node in
            let readsTrainable = node.inputs.contains { graph.isTrainable(graph[$0]) }
            return constantWeights && (mode == .inference || !readsTrainable) ? DerivedWeights() : nil
        }
        plan = Plan(graph, keep: keep)
        if verify { try PlanVerifier.verify(plan) }
        guard let arena = Arena(bytes: plan.arenaBytes) else { throw ExecutionError.outOfMemory(node: "arena", bytes: plan.arenaBytes) }
        self.arena = arena
        slots = Array(repeating: nil, count: graph.values.count)
        for value in graph.persistentValues { slots[value.id.index] = parameters[value.name] }
        for (valueIndex, region) in plan.regionOfValue {
            let value = graph.values[valueIndex]
            slots[valueIndex] = Tensor(
                viewing: arena.base + plan.regions[region].offset, shape: value.shape,
                dtype: value.dtype, owner: arena)
        }
        for gradient in graph.gradients.values {
            slots[gradient.index] = Tensor(zeros: graph[gradient].shape, dtype: graph[gradient].dtype)
        }
        for value in graph.values where value.role == .activation && slots[value.id.index] == nil {
            slots[value.id.index] = Tensor(zeros: value.shape, dtype: value.dtype)  // e.g. empty update tokens
        }
    }

    #if DEBUG
        public static let verifyByDefault = true
    #else
        public static let verifyByDefault = false
    #endif

    /// Runs the step on `feeds` (by input name: "input", "labels") and returns its outputs by role.
    /// Returned tensors are views of the arena: copy them to keep them past the next run.
    @discardableResult
    public func run(_ feeds: [String: Tensor], hyper: StepHyperparameters = StepHyperparameters()) throws -> [String: Tensor] {
        for value in graph.inputs {
            guard let feed = feeds[value.name] else { throw GraphError.unknownName("input '\(value.name)' was not fed") }
            guard feed.shape == value.shape, feed.dtype == value.dtype else {
                throw GraphError.invalid(
                    "input '\(value.name)' has shape \(feed.shape) \(feed.dtype), graph expects \(value.shape) \(value.dtype)")
            }
            slots[value.id.index]!.copy(from: feed)
        }
        runs += 1
        let runSeed = Self.runSeed(seed, run: runs)
        var synchronization: BatchNormSynchronization?
        if mode == .training, let group = batchNormGroup, group.size > 1 {
            var images = [Double(graph.inputs.first?.shape[0] ?? 0)]
            try group.allReduceSum(&images)
            synchronization = BatchNormSynchronization(communicator: group, images: Int(images[0]))
        }
        // With a gradient allreduce the updates wait for it: moved after the backward pass (always
        // safe: an update is the last use of its parameter and gradient).
        var updates: [Int] = []
        for (position, index) in plan.order.enumerated() {
            if let gradientBuckets {
                if graph.nodes[index].phase == .update {
                    updates.append(index)
                    continue
                }
                try execute(graph.nodes[index], seed: runSeed, hyper: hyper, synchronization: synchronization)
                try gradientBuckets.finished(position: position)
            } else {
                try execute(graph.nodes[index], seed: runSeed, hyper: hyper, synchronization: synchronization)
            }
        }
        if let gradientBuckets {
            try gradientBuckets.complete()
            for index in updates { try execute(graph.nodes[index], seed: runSeed, hyper: hyper, synchronization: nil) }
        }
        return graph.outputs.mapValues { slots[$0.index]! }
    }

    /// Joins a data-parallel job (a group of more than one): gradients are allreduced in buckets,
    /// BatchNorm optionally normalises over every rank's batch.
    func join(_ parallel: DataParallel) {
        guard parallel.communicator.size > 1 else { return }
        gradientBuckets = GradientBuckets(
            graph: graph, plan: plan, gradient: { [slots] in slots[$0.index]! }, communicator: parallel.communicator,
            bucketBytes: parallel.bucketBytes)
        batchNormGroup = parallel.synchronizesBatchNorm ? parallel.communicator : nil
    }

    private func execute(_ node: Graph.Node, seed: UInt64, hyper: StepHyperparameters, synchronization: BatchNormSynchronization?) throws {
        var call = KernelCall(
            node: node.name, inputs: node.inputs.map { slots[$0.index]! },
            outputs: node.outputs.map { slots[$0.index]! }, mode: mode, seed: seed)
        call.hyper = hyper
        call.batchNormSynchronization = synchronization
        call.derived = derived[node.index]
        if stepTimes != nil {
            let start = DispatchTime.now().uptimeNanoseconds
            try node.op.forward(call)
            stepTimes![node.name, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } else {
            try node.op.forward(call)
        }
        let refused = kn_take_allocation_failure()
        if refused > 0 { throw ExecutionError.outOfMemory(node: node.name, bytes: Int(refused)) }
        if checksFiniteness {
            for output in node.outputs {
                if let summary = slots[output.index]!.nonFiniteSummary {
                    throw ExecutionError.nonFinite(node: node.name, detail: summary)
                }
            }
        }
    }

    /// The seed stochastic kernels see on the `run`-th run (1-based) of an executor seeded `seed`.
    public static func runSeed(_ seed: UInt64, run: UInt64) -> UInt64 { seed ^ (run &* 0x9E37_79B9_7F4A_7C15) }

    /// The tensor holding value `name` (valid after a run for outputs, kept values and gradients).
    public func tensor(named name: String) throws -> Tensor {
        let value = try graph.value(named: name)
        return slots[value.id.index]!
    }
}

/// One aligned, zeroed allocation that tensor views point into.
final class Arena: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    init?(bytes: Int) {
        guard let memory = alignedZeroedMemory(max(bytes, Plan.alignment)) else { return nil }
        base = memory
    }
    deinit { free(base) }
}
