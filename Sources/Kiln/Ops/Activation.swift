import CKernels

/// max(x, 0).
public struct ReLUOp: Primitive {
    public init() {}
    public var kind: String { "ReLU" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        kn_relu(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
}

/// min(max(x, 0), 6) (Keras' ReLU(max_value=6)).
public struct ReLU6Op: Primitive {
    public init() {}
    public var kind: String { "ReLU6" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        kn_relu6(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
}

/// Inverted dropout: identity in inference; in training zeroes with probability p and scales
/// survivors by 1/(1-p). The mask depends only on the run seed, so runs are reproducible.
public struct DropoutOp: Primitive {
    public var p: Float
    public init(p: Float) { self.p = p }
    public var kind: String { "Dropout" }
    public var attributes: String { "p=\(p)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard (0...1).contains(p) else { throw ShapeRuleError("dropout probability \(p) outside [0, 1]") }
        return inputs[0]
    }
    public func forward(_ call: KernelCall) {
        let count = Int64(call.output.count)
        switch call.mode {
        case .inference: kn_copy(call.inputs[0].floats, call.output.floats, count)
        case .training: kn_dropout(call.inputs[0].floats, call.output.floats, nil, count, p, call.seed)
        }
    }
}
