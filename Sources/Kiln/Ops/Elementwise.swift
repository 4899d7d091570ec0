import CKernels

/// a + b with identical shapes (the residual join).
public struct AddOp: Primitive {
    public init() {}
    public var kind: String { "Add" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2 else { throw ShapeRuleError("expects two inputs") }
        guard inputs[0] == inputs[1] else { throw ShapeRuleError("cannot add \(inputs[0]) and \(inputs[1])") }
        return inputs[0]
    }
    public func forward(_ call: KernelCall) {
        kn_add(call.inputs[0].floats, call.inputs[1].floats, call.output.floats, Int64(call.output.count))
    }
    /// Both inputs receive the output gradient as is: no node.
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [g.needs[0] ? g.gradOutput : nil, g.needs[1] ? g.gradOutput : nil]
    }
}

/// [N, ...] → [N, prod(...)] (torch.flatten(x, 1)).
public struct FlattenOp: Primitive {
    public init() {}
    public var kind: String { "Flatten" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs[0].rank >= 1 else { throw ShapeRuleError("cannot flatten a scalar") }
        return [inputs[0][0], inputs[0].count / max(inputs[0][0], 1)]
    }
    public func forward(_ call: KernelCall) {
        kn_copy(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", ReshapeOp(g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// Same elements, another shape.
public struct ReshapeOp: Primitive {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var kind: String { "Reshape" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs[0].count == shape.count else { throw ShapeRuleError("cannot reshape \(inputs[0]) to \(shape)") }
        return shape
    }
    public func forward(_ call: KernelCall) {
        kn_copy(call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
}

/// Row `row` of a [R, C] tensor (splits the BN reduce output into dβ and dγ).
public struct SelectRowOp: Primitive {
    public let row: Int
    public var kind: String { "SelectRow" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs[0].rank == 2, row < inputs[0][0] else { throw ShapeRuleError("no row \(row) in \(inputs[0])") }
        return [inputs[0][1]]
    }
    public func forward(_ call: KernelCall) {
        let c = call.output.count
        kn_copy(call.inputs[0].floats + row * c, call.output.floats, Int64(c))
    }
}

/// A constant tensor (seeds the backward pass with d loss / d loss = 1).
public struct FillOp: Primitive {
    public let value: Float
    public let shape: Shape
    public var kind: String { "Fill" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { shape }
    public func forward(_ call: KernelCall) {
        kn_fill_constant(call.output.floats, Int64(call.output.count), value)
    }
}
