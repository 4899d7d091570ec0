import CKernels

/// max(x, 0).
public struct ReLUOp: Primitive {
    public init() {}
    public var kind: String { "ReLU" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        kn_relu(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
    /// The mask comes from the output (y > 0), as PyTorch's threshold_backward.
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try EpilogueActivation.relu.gradient(g, output: g.output, gradOutput: g.gradOutput, name: "grad_input") }]
    }
}

/// min(max(x, 0), 6) (Keras' ReLU(max_value=6)).
public struct ReLU6Op: Primitive {
    public init() {}
    public var kind: String { "ReLU6" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        kn_relu6(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try EpilogueActivation.relu6.gradient(g, output: g.output, gradOutput: g.gradOutput, name: "grad_input") }]
    }
}

/// Backward of ReLU (upper = ∞) and ReLU6 (upper = 6): dy where 0 < y < upper. Inputs: y, dy.
public struct MaskedGradientOp: Primitive {
    public let upper: Float
    public var kind: String { upper.isInfinite ? "ReLUBackward" : "ReLU6Backward" }
    public var inPlaceInput: Int? { 1 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let n = Int64(call.output.count)
        (upper.isInfinite ? kn_relu_backward : kn_relu6_backward)(call.inputs[0].floats, call.inputs[1].floats, call.output.floats, n)
    }
}

/// Inverted dropout: identity in inference; in training zeroes with probability p and scales
/// survivors by 1/(1-p). The mask depends only on the run seed, so runs are reproducible.
public struct DropoutOp: Primitive {
    public var p: Float
    public init(p: Float) { self.p = p }
    public var kind: String { "Dropout" }
    public var inPlaceInput: Int? { 0 }
    public var attributes: String { "p=\(p)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard (0...1).contains(p) else { throw ShapeRuleError("dropout probability \(p) outside [0, 1]") }
        return inputs[0]
    }
    public func forward(_ call: KernelCall) {
        let count = Int64(call.output.count)
        switch call.mode {
        case .inference: kn_copy(call.inputs[0].floats, call.output.floats, count)
        case .training: kn_dropout(call.inputs[0].floats, call.output.floats, count, p, dropoutSeed(call.seed, call.node))
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", DropoutBackwardOp(p: p, forwardNode: g.node.name), [g.gradOutput]) }]
    }
}

/// Regenerates the forward pass's mask from the run seed and the forward node's name (nothing is saved).
public struct DropoutBackwardOp: Primitive {
    public let p: Float
    public let forwardNode: String
    public var kind: String { "DropoutBackward" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let count = Int64(call.output.count)
        switch call.mode {
        case .inference: kn_copy(call.inputs[0].floats, call.output.floats, count)
        case .training: kn_dropout(call.inputs[0].floats, call.output.floats, count, p, dropoutSeed(call.seed, forwardNode))
        }
    }
}

func dropoutSeed(_ runSeed: UInt64, _ node: String) -> UInt64 { runSeed ^ fnv1a(node) }
