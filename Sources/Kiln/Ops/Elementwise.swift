import CKernels

/// a + b with identical shapes (the residual join).
public struct AddOp: Primitive {
    public init() {}
    public var kind: String { "Add" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2 else { throw ShapeRuleError("expects two inputs") }
        guard inputs[0] == inputs[1] else { throw ShapeRuleError("cannot add \(inputs[0]) and \(inputs[1])") }
        return inputs[0]
    }
    public func forward(_ call: KernelCall) {
        kn_add(call.inputs[0].floats, call.inputs[1].floats, call.output.floats, Int64(call.output.count))
    }
}

/// [N, ...] → [N, prod(...)] (torch.flatten(x, 1)).
public struct FlattenOp: Primitive {
    public init() {}
    public var kind: String { "Flatten" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs[0].rank >= 1 else { throw ShapeRuleError("cannot flatten a scalar") }
        return [inputs[0][0], inputs[0].count / max(inputs[0][0], 1)]
    }
    public func forward(_ call: KernelCall) {
        kn_copy(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
}
