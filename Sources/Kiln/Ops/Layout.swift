import CKernels

// Ops that move elements without computing on them: transpose, slice, concatenate, reshape.

extension ReshapeOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", ReshapeOp(g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// Permutes dimensions: output dimension k is input dimension perm[k].
public struct TransposeOp: Primitive {
    public let perm: [Int]
    public init(_ perm: [Int]) { self.perm = perm }
    public var kind: String { "Transpose" }
    public var attributes: String { "perm=\(perm)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard perm.sorted() == Array(0..<inputs[0].rank) else { throw ShapeRuleError("perm \(perm) is not a permutation of \(inputs[0])") }
        return Shape(perm.map { inputs[0][$0] })
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0], strides = contiguousStrides(x.shape)
        let out = call.output.shape
        withInt64Buffers([perm.map { strides[$0] }, out.dims.map(Int64.init)]) { p in
            kn_strided_copy(x.floats, p[0], p[1], Int32(out.rank), call.output.floats)
        }
    }
    public var inverse: TransposeOp {
        var inv = [Int](repeating: 0, count: perm.count)
        for (k, p) in perm.enumerated() { inv[p] = k }
        return TransposeOp(inv)
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", inverse, [g.gradOutput]) }]
    }
}

/// Elements start[k], start[k] + step[k], … (size[k] of them) along every dimension k.
public struct SliceOp: Primitive {
    public let start: [Int]
    public let step: [Int]
    public let size: [Int]
    public init(start: [Int], step: [Int], size: [Int]) { (self.start, self.step, self.size) = (start, step, size) }
    public var kind: String { "Slice" }
    public var attributes: String { "start=\(start) step=\(step) size=\(size)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        let x = inputs[0]
        guard start.count == x.rank, step.count == x.rank, size.count == x.rank else {
            throw ShapeRuleError("slice of rank \(start.count) for \(x)")
        }
        for k in 0..<x.rank where size[k] > 0 {
            let last = start[k] + (size[k] - 1) * step[k]
            guard step[k] != 0, (0..<x[k]).contains(start[k]), (0..<x[k]).contains(last) else {
                throw ShapeRuleError("slice start \(start[k]) step \(step[k]) size \(size[k]) outside dimension \(k) of \(x)")
            }
        }
        return Shape(size)
    }
    /// Offset of the first element and strides of the slice inside a tensor of `shape`.
    func layout(in shape: Shape) -> (offset: Int, strides: [Int64]) {
        let strides = contiguousStrides(shape)
        let offset = (0..<shape.rank).reduce(0) { $0 + start[$1] * Int(strides[$1]) }
        return (offset, (0..<shape.rank).map { strides[$0] * Int64(step[$0]) })
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0], (offset, strides) = layout(in: x.shape)
        withInt64Buffers([strides, size.map(Int64.init)]) { p in
            kn_strided_copy(x.floats + offset, p[0], p[1], Int32(size.count), call.output.floats)
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", SliceBackwardOp(slice: self, inputShape: g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// The gradient of a slice: dy placed where the slice was read, zeros elsewhere.
public struct SliceBackwardOp: Primitive {
    public let slice: SliceOp
    public let inputShape: Shape
    public var kind: String { "SliceBackward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputShape }
    public func forward(_ call: KernelCall) {
        let (offset, strides) = slice.layout(in: inputShape)
        kn_fill_constant(call.output.floats, Int64(call.output.count), 0)
        withInt64Buffers([strides, slice.size.map(Int64.init)]) { p in
            kn_strided_scatter(call.inputs[0].floats, p[1], Int32(slice.size.count), call.output.floats + offset, p[0])
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", slice, [g.gradOutput]) }]
    }
}

/// Joins tensors along `axis` (all other dimensions equal).
public struct ConcatOp: Primitive {
    public let axis: Int
    public init(axis: Int) { self.axis = axis }
    public var kind: String { "Concat" }
    public var attributes: String { "axis=\(axis)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard let first = inputs.first, (0..<first.rank).contains(axis) else { throw ShapeRuleError("axis \(axis) out of range") }
        var dims = first.dims
        dims[axis] = 0
        for shape in inputs {
            guard shape.rank == first.rank, (0..<shape.rank).allSatisfy({ $0 == axis || shape[$0] == first[$0] }) else {
                throw ShapeRuleError("cannot concatenate \(shape) with \(first) along axis \(axis)")
            }
            dims[axis] += shape[axis]
        }
        return Shape(dims)
    }
    /// The slice of the output that input i fills.
    func part(_ i: Int, of shapes: [Shape]) -> SliceOp {
        let out = try! outputShape(for: shapes)
        var start = [Int](repeating: 0, count: out.rank)
        start[axis] = shapes[..<i].reduce(0) { $0 + $1[axis] }
        return SliceOp(start: start, step: [Int](repeating: 1, count: out.rank), size: shapes[i].dims)
    }
    public func forward(_ call: KernelCall) {
        let shapes = call.inputs.map(\.shape)
        for (i, x) in call.inputs.enumerated() where x.count > 0 {
            let part = part(i, of: shapes), (offset, strides) = part.layout(in: call.output.shape)
            withInt64Buffers([strides, x.shape.dims.map(Int64.init)]) { p in
                kn_strided_scatter(x.floats, p[1], Int32(x.shape.rank), call.output.floats + offset, p[0])
            }
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let shapes = g.node.inputs.map { g.shape($0) }
        return try shapes.indices.map { i in try g.gradient(i) { try g.emit("grad_input\(i)", part(i, of: shapes), [g.gradOutput]) } }
    }
}
