/// One op family: its shape rule and its forward kernel binding live together (MLX's Primitive).
/// Ops are small value types holding only static attributes; parameters arrive as inputs.
public protocol Primitive: Sendable {
    /// The PyTorch-style type name shown in summaries and plans, e.g. "Conv2d".
    var kind: String { get }
    /// Attributes in a short human form for `graphc dump`, e.g. "k3 s2 p1".
    var attributes: String { get }
    var outputDType: DType { get }
    /// Output shape from input shapes; throws `ShapeRuleError` naming both shapes on mismatch.
    func outputShape(for inputs: [Shape]) throws -> Shape
    /// All outputs: the result first, then tensors the op saves for its backward (fused steps).
    func outputShapes(for inputs: [Shape]) throws -> [Shape]
    /// Index of an input whose buffer the output may overwrite (elementwise ops), or nil.
    var inPlaceInput: Int? { get }
    /// Runs the kernel.
    func forward(_ call: KernelCall) throws
    /// Emits the vector-Jacobian product: backward nodes that turn the gradient of this node's
    /// output into gradients of the inputs `g.needs` marks. Returns one entry per input.
    func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?]
}

extension Primitive {
    public func outputShapes(for inputs: [Shape]) throws -> [Shape] { [try outputShape(for: inputs)] }
    public var inPlaceInput: Int? { nil }
    public var attributes: String { "" }
    public var outputDType: DType { .float32 }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        throw GraphError.invalid("op \(kind) at node '\(g.node.name)' has no gradient rule")
    }
}

/// Whether a run computes with batch statistics and stochastic layers (training) or not.
public enum Mode: String, Sendable, CaseIterable {
    case inference, training
}

/// What a kernel sees: its input and output tensors and the run's mode.
public struct KernelCall {
    public let node: String
    public let inputs: [Tensor]
    public let outputs: [Tensor]
    public var output: Tensor { outputs[0] }
    public let mode: Mode
    /// Per-run seed for stochastic ops (dropout mixes in its forward node's name); fixed seed ⇒
    /// identical runs.
    public let seed: UInt64
    /// Scalar run inputs of a training step (learning rate, optimiser step), when present.
    public var hyper: StepHyperparameters = StepHyperparameters()
    /// Set in data-parallel training with synchronised BatchNorm: BN normalises over every rank's batch.
    public var batchNormSynchronization: BatchNormSynchronization?
    /// Set by an executor whose weights do not change between runs (`Executor(constantWeights:)`):
    /// where an op keeps what it derives from its weights, computed on its first run.
    public var derived: DerivedWeights?
}

/// What an op derives from its weights (BN folded into a conv's filters), kept across the runs of
/// an executor whose parameters are constant, as ONNX Runtime folds constants once per session.
public final class DerivedWeights: @unchecked Sendable {
    public var tensors: [Tensor] = []
    public init() {}
}

/// Per-run scalars the update kernels read; set by the train step before each run.
public struct StepHyperparameters: Sendable {
    public var learningRate: Float = 0
    /// 1-based optimiser step.
    public var step: Int64 = 0
    public init(learningRate: Float = 0, step: Int64 = 0) {
        self.learningRate = learningRate
        self.step = step
    }
}

/// Raised by a kernel binding when runtime data is invalid (e.g. a label out of range).
public struct KernelError: Error, CustomStringConvertible {
    public let node: String
    public let detail: String
    public var description: String { "at node '\(node)': \(detail)" }
}

func expectRank(_ shape: Shape, _ rank: Int, _ what: String) throws {
    guard shape.rank == rank else {
        throw ShapeRuleError("\(what) must have rank \(rank), got shape \(shape)")
    }
}
