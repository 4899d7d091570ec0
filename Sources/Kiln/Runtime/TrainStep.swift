/// A compiled training step: (model, trainable set, optimizer, batch shape) → one graph with the
/// forward pass, the derived backward pass and the optimizer updates, run by one executor.
///
///     var step = try TrainStep(model: BasicCNN(classes: 21), inputShape: [32, 3, 64, 64],
///                              optimizer: .sgd(.init(learningRate: 0.01, momentum: 0.9)))
///     let result = try step.run(images: x, labels: y)   // result.loss, result.logits
///
/// Steps for other batch sizes (a last, smaller batch) and eval-mode executors are compiled on
/// first use and share the same `ParameterStore`.
public final class TrainStep {
    public struct Configuration: Sendable {
        public var optimizer: Optimizer
        public var schedule: LRSchedule = .constant
        /// Module prefixes to freeze, or nil.
        public var freeze: [String] = []
        /// When set, freeze everything except these module prefixes.
        public var trainOnly: [String]? = nil
        public var frozenBatchNorm: FrozenBatchNorm = .runningStatistics
        public var seed: UInt64 = 0
        /// Run the fusion pass (off: the unfused graph, for tests and debugging).
        public var fuse = true
        /// Recompute cheap saved activations in the backward pass instead of keeping them
        /// (`RematerializationPass`; fused graphs only): less memory for a few percent of time.
        public var rematerialize = true
        /// Values (a `FrozenBoundary`'s) the step starts from instead of the images: it trains the
        /// head on features computed elsewhere (`run(features:labels:)`, `evaluate(features:)`).
        public var startAt: [String]? = nil
        /// Train as one rank of a data-parallel job (see `DataParallel`); each rank runs its share
        /// of the global batch.
        public var dataParallel: DataParallel? = nil
        /// The parameters and buffers the step does not train stay as they are while it lives (no
        /// checkpoint loaded into them after the first step): the frozen convs then fold their BN
        /// and transform their filters once, not every step (`Executor(constantWeights:)`).
        public var frozenWeightsConstant = false

        public init(
            optimizer: Optimizer, schedule: LRSchedule = .constant, freeze: [String] = [],
            trainOnly: [String]? = nil, frozenBatchNorm: FrozenBatchNorm = .runningStatistics, seed: UInt64 = 0,
            fuse: Bool = true
        ) {
            (self.optimizer, self.schedule, self.freeze, self.trainOnly) = (optimizer, schedule, freeze, trainOnly)
            (self.frozenBatchNorm, self.seed, self.fuse) = (frozenBatchNorm, seed, fuse)
        }
    }

    public struct Result {
        public let loss: Float
        /// The executor's buffer: copy it to keep it past the next step.
        public let logits: Tensor
    }

    public let model: any Layer
    public let configuration: Configuration
    public let parameters: ParameterStore
    /// The compiled step for the batch size given at construction.
    public let graph: Graph
    /// Epoch for the learning-rate schedule (set by the training loop).
    public var epoch = 0
    /// Optimizer steps taken so far.
    public private(set) var stepCount: Int64 = 0

    private let sampleShape: Shape
    private var trainExecutors: [Int: Executor] = [:]
    private var evalExecutors: [Int: Executor] = [:]
    /// Whether rank 0's state has been broadcast (before the first data-parallel step).
    private var stateBroadcast = false

    public convenience init(
        model: any Layer, inputShape: Shape, parameters: ParameterStore? = nil,
        optimizer: Optimizer
    ) throws {
        try self.init(model: model, inputShape: inputShape, parameters: parameters, configuration: Configuration(optimizer: optimizer))
    }

    public init(model: any Layer, inputShape: Shape, parameters: ParameterStore? = nil, configuration: Configuration) throws {
        self.model = model
        self.configuration = configuration
        sampleShape = Shape(Array(inputShape.dims.dropFirst()))
        graph = try Self.compile(model, input: inputShape, configuration)
        if let parameters {
            parameters.addMissing(from: graph, seed: configuration.seed)
            self.parameters = parameters
        } else if let pretrained = model as? any PretrainedLayer {
            self.parameters = try pretrained.pretrainedParameters(for: graph, seed: configuration.seed)
            self.parameters.addMissing(from: graph, seed: configuration.seed)
        } else {
            self.parameters = ParameterStore(graph: graph, seed: configuration.seed)
        }
        _ = try trainExecutor(batch: inputShape[0], graph: graph)
    }

    /// See `Compiler.training`.
    public static func compile(_ model: any Layer, input: Shape, _ configuration: Configuration) throws -> Graph {
        try Compiler.training(model, input: input, configuration)
    }

    /// Continues a resumed run: the optimizer's step count (Adam's bias correction, SGD's first step).
    public func restore(stepCount: Int64) { self.stepCount = stepCount }

    public var learningRate: Float {
        configuration.schedule.learningRate(base: configuration.optimizer.learningRate, epoch: epoch)
    }

    /// One optimizer step on a batch: forward (BN batch statistics), backward, update.
    @discardableResult
    public func run(images: Tensor, labels: Tensor) throws -> Result { try run(features: ["input": images], labels: labels) }

    /// One optimizer step from the values the step starts at (`Configuration.startAt`; `input`
    /// for a whole-model step), by name.
    @discardableResult
    public func run(features: [String: Tensor], labels: Tensor) throws -> Result {
        let executor = try trainExecutor(batch: labels.shape[0])
        try synchronizeState()
        stepCount += 1
        let outputs = try executor.run(
            Self.feeds(features, labels),
            hyper: StepHyperparameters(learningRate: learningRate, step: stepCount))
        return Result(loss: outputs["loss"]!.scalars[0], logits: outputs["logits"]!)
    }

    /// Why a step went non-finite: the first parameter or optimizer slot that already holds NaN
    /// or infinity (an earlier update diverged), else the first node whose output does when the
    /// batch is run again with every output checked. The re-run updates the parameters again:
    /// call it only to report the failure, never to continue training.
    public func diagnoseNonFinite(images: Tensor, labels: Tensor) -> ExecutionError? {
        diagnoseNonFinite(features: ["input": images], labels: labels)
    }

    /// `diagnoseNonFinite(images:labels:)` for a step that starts at features.
    public func diagnoseNonFinite(features: [String: Tensor], labels: Tensor) -> ExecutionError? {
        if let bad = parameters.firstNonFinite(in: graph) { return bad }
        guard let executor = try? trainExecutor(batch: labels.shape[0]) else { return nil }
        executor.checksFiniteness = true
        defer { executor.checksFiniteness = false }
        do {
            try executor.run(
                Self.feeds(features, labels), hyper: StepHyperparameters(learningRate: learningRate, step: stepCount))
        } catch let error as ExecutionError {
            return error
        } catch {
            return nil
        }
        return nil
    }

    /// Eval-mode logits (BN on running statistics, dropout off); parameters are not touched.
    public func evaluate(images: Tensor) throws -> Tensor { try evaluate(features: ["input": images]) }

    /// Eval-mode logits from the values the step starts at, by name.
    public func evaluate(features: [String: Tensor]) throws -> Tensor {
        guard let batch = features.values.first?.shape[0] else { throw GraphError.invalid("evaluate: no inputs given") }
        if evalExecutors[batch] == nil {
            let forward = try Compiler.inference(
                model, input: Shape([batch] + sampleShape.dims), fuse: configuration.fuse, startAt: configuration.startAt)
            evalExecutors[batch] = try Executor(graph: forward, parameters: parameters, mode: .inference)
        }
        return try evalExecutors[batch]!.run(features)["logits"]!
    }

    /// The executor's feeds: the step's inputs and the labels.
    private static func feeds(_ features: [String: Tensor], _ labels: Tensor) -> [String: Tensor] {
        features.merging(["labels": labels]) { a, _ in a }
    }

    private func trainExecutor(batch: Int, graph compiled: Graph? = nil) throws -> Executor {
        if let executor = trainExecutors[batch] { return executor }
        let graph = try compiled ?? Self.compile(model, input: Shape([batch] + sampleShape.dims), configuration)
        let executor = try Executor(
            graph: graph, parameters: parameters, mode: .training, seed: configuration.seed,
            constantWeights: configuration.frozenWeightsConstant)
        if let parallel = configuration.dataParallel { executor.join(parallel) }
        trainExecutors[batch] = executor
        return executor
    }

    /// Data-parallel: rank 0's parameters, buffers and optimizer state on every rank before the
    /// first step (whatever each rank loaded or initialised); before the later ones, rank 0's BN
    /// running statistics when each rank normalises with its own batch (DDP's broadcast_buffers).
    private func synchronizeState() throws {
        guard let parallel = configuration.dataParallel, parallel.communicator.size > 1 else { return }
        if !stateBroadcast {
            try parallel.communicator.broadcast(graph.persistentValues.compactMap { parameters[$0.name] })
            stateBroadcast = true
        } else if !parallel.synchronizesBatchNorm {
            try parallel.communicator.broadcast(graph.buffers.compactMap { parameters[$0.name] })
        }
    }

    /// The gradient allreduce's time and volume so far (zero outside data-parallel training).
    public var communicationStatistics: CommunicationStatistics {
        trainExecutors.values.reduce(into: CommunicationStatistics()) { total, executor in
            guard let s = executor.gradientBuckets?.statistics else { return }
            total.seconds += s.seconds
            total.waitSeconds += s.waitSeconds
            total.bytes += s.bytes
            total.buckets += s.buckets
            total.steps += s.steps
        }
    }
}
