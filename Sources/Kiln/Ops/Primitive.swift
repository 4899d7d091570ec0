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
    /// Runs the forward kernel.
    func forward(_ call: KernelCall) throws
}

extension Primitive {
    public var attributes: String { "" }
    public var outputDType: DType { .float32 }
}

/// Whether a run computes with batch statistics and stochastic layers (training) or not.
public enum Mode: String, Sendable, CaseIterable {
    case inference, training
}

/// What a kernel sees: its input and output tensors and the run's mode.
public struct KernelCall {
    public let node: String
    public let inputs: [Tensor]
    public let output: Tensor
    public let mode: Mode
    /// Per-run, per-node seed for stochastic ops (dropout); fixed seed ⇒ identical runs.
    public let seed: UInt64
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
