import CKernels

// Broadcasting arithmetic and the reductions its gradients need (NumPy/ONNX broadcasting:
// shapes aligned on the right, a dimension of 1 repeats).

/// Row-major strides of a contiguous tensor.
func contiguousStrides(_ shape: Shape) -> [Int64] {
    var strides = [Int64](repeating: 1, count: shape.rank)
    var step: Int64 = 1
    for k in stride(from: shape.rank - 1, through: 0, by: -1) {
        strides[k] = step
        step *= Int64(shape[k])
    }
    return strides
}

/// The shape two operands broadcast to.
public func broadcastShape(_ a: Shape, _ b: Shape) throws -> Shape {
    let rank = max(a.rank, b.rank)
    var dims = [Int](repeating: 1, count: rank)
    for k in 0..<rank {
        let da = k < rank - a.rank ? 1 : a[k - (rank - a.rank)]
        let db = k < rank - b.rank ? 1 : b[k - (rank - b.rank)]
        guard da == db || da == 1 || db == 1 else { throw ShapeRuleError("cannot broadcast \(a) with \(b)") }
        dims[k] = da == 1 ? db : da
    }
    return Shape(dims)
}

/// Strides that read a tensor of `shape` as if it had the (broadcast) shape `output`: 0 on the
/// dimensions it repeats.
func broadcastStrides(_ shape: Shape, to output: Shape) -> [Int64] {
    let own = contiguousStrides(shape), lead = output.rank - shape.rank
    return (0..<output.rank).map { k in k < lead || shape[k - lead] == 1 ? 0 : own[k - lead] }
}

func withInt64Buffers<R>(_ arrays: [[Int64]], _ body: ([UnsafePointer<Int64>]) -> R) -> R {
    // Each array padded by one element, so an empty (rank-0) array still has an address.
    let padded = arrays.map { $0 + [0] }
    func go(_ i: Int, _ pointers: [UnsafePointer<Int64>]) -> R {
        if i == padded.count { return body(pointers) }
        return padded[i].withUnsafeBufferPointer { go(i + 1, pointers + [$0.baseAddress!]) }
    }
    return go(0, [])
}

public enum BinaryOperator: String, Sendable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div", max = "Max", min = "Min"
    var kernel: kn_binary_op {
        switch self {
        case .add: KN_BINARY_ADD
        case .sub: KN_BINARY_SUB
        case .mul: KN_BINARY_MUL
        case .div: KN_BINARY_DIV
        case .max: KN_BINARY_MAX
        case .min: KN_BINARY_MIN
        }
    }
}

/// a ∘ b with broadcasting.
public struct BinaryOp: Primitive {
    public let op: BinaryOperator
    public init(_ op: BinaryOperator) { self.op = op }
    public var kind: String { op.rawValue }
    /// Only taken when a has the output's size, hence no repeated element.
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2 else { throw ShapeRuleError("expects two inputs") }
        return try broadcastShape(inputs[0], inputs[1])
    }
    public func forward(_ call: KernelCall) {
        let out = call.output.shape
        let (a, b) = (call.inputs[0], call.inputs[1])
        withInt64Buffers([broadcastStrides(a.shape, to: out), broadcastStrides(b.shape, to: out), out.dims.map(Int64.init)]) { p in
            kn_broadcast_binary(Int32(op.kernel.rawValue), a.floats, p[0], b.floats, p[1], p[2], Int32(out.rank), call.output.floats)
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let (a, b, dy) = (g.input(0), g.input(1), g.gradOutput)
        let sumTo = { (value: Graph.ValueID, target: Graph.ValueID, suffix: String) throws -> Graph.ValueID in
            g.shape(value) == g.shape(target) ? value : try g.emit("\(suffix)_sum", SumToShapeOp(g.shape(target)), [value])
        }
        switch op {
        case .add:
            return [try g.gradient(0) { try sumTo(dy, a, "grad_a") }, try g.gradient(1) { try sumTo(dy, b, "grad_b") }]
        case .sub:
            return [
                try g.gradient(0) { try sumTo(dy, a, "grad_a") },
                try g.gradient(1) { try sumTo(try g.emit("grad_b_neg", UnaryOp(.neg), [dy]), b, "grad_b") },
            ]
        case .mul:
            return [
                try g.gradient(0) { try sumTo(try g.emit("grad_a_mul", BinaryOp(.mul), [dy, b]), a, "grad_a") },
                try g.gradient(1) { try sumTo(try g.emit("grad_b_mul", BinaryOp(.mul), [dy, a]), b, "grad_b") },
            ]
        case .div:
            return [
                try g.gradient(0) { try sumTo(try g.emit("grad_a_div", BinaryOp(.div), [dy, b]), a, "grad_a") },
                try g.gradient(1) {
                    let dyy = try g.emit("grad_b_mul", BinaryOp(.mul), [dy, g.output])
                    let quotient = try g.emit("grad_b_div", BinaryOp(.div), [dyy, b])
                    return try sumTo(try g.emit("grad_b_neg", UnaryOp(.neg), [quotient]), b, "grad_b")
                },
            ]
        case .max, .min:
            throw GraphError.invalid("op \(kind) at node '\(g.node.name)' has no gradient rule")
        }
    }
}

/// Repeats a tensor along its dimensions of size 1 (and new leading ones): ONNX Expand.
public struct BroadcastToOp: Primitive {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var kind: String { "Expand" }
    public var attributes: String { "\(shape)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard try broadcastShape(inputs[0], shape) == shape else { throw ShapeRuleError("cannot broadcast \(inputs[0]) to \(shape)") }
        return shape
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0]
        withInt64Buffers([broadcastStrides(x.shape, to: shape), shape.dims.map(Int64.init)]) { p in
            kn_strided_copy(x.floats, p[0], p[1], Int32(shape.rank), call.output.floats)
        }
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", SumToShapeOp(g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// Sums a tensor over the dimensions along which `shape` was broadcast to it (the gradient of
/// broadcasting).
public struct SumToShapeOp: Primitive {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var kind: String { "SumToShape" }
    public var attributes: String { "\(shape)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard try broadcastShape(inputs[0], shape) == inputs[0] else { throw ShapeRuleError("\(inputs[0]) is not a broadcast of \(shape)") }
        return shape
    }
    /// Axes of the input that are summed (those `shape` repeats).
    func reducedAxes(_ input: Shape) -> Set<Int> {
        let lead = input.rank - shape.rank
        return Set((0..<input.rank).filter { k in k < lead || (shape[k - lead] == 1 && input[k] != 1) })
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0]
        reduceSum(x, axes: reducedAxes(x.shape), scale: 1, into: call.output)
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", BroadcastToOp(g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// Sums `x` over `axes` into `y` (whose elements are the kept axes in order), times `scale`.
func reduceSum(_ x: Tensor, axes: Set<Int>, scale: Float, into y: Tensor) {
    let strides = contiguousStrides(x.shape)
    let kept = (0..<x.shape.rank).filter { !axes.contains($0) }
    let reduced = (0..<x.shape.rank).filter { axes.contains($0) }
    let outShape = kept.map { Int64(x.shape[$0]) }, outStrides = kept.map { strides[$0] }
    let redShape = reduced.map { Int64(x.shape[$0]) }, redStrides = reduced.map { strides[$0] }
    withInt64Buffers([outShape, outStrides, redShape, redStrides]) { p in
        kn_reduce_sum(x.floats, p[0], p[1], Int32(kept.count), p[2], p[3], Int32(reduced.count), scale, y.floats)
    }
}

/// ONNX ReduceMean / ReduceSum over `axes` (normalised, ascending), keeping them as 1s or not.
public struct ReduceOp: Primitive {
    public let axes: [Int]
    public let keepDims: Bool
    public let mean: Bool
    public init(axes: [Int], keepDims: Bool, mean: Bool) { (self.axes, self.keepDims, self.mean) = (axes.sorted(), keepDims, mean) }
    public var kind: String { mean ? "ReduceMean" : "ReduceSum" }
    public var attributes: String { "axes=\(axes) keepdims=\(keepDims ? 1 : 0)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        let x = inputs[0]
        guard axes.allSatisfy({ (0..<x.rank).contains($0) }) else { throw ShapeRuleError("axes \(axes) out of range for \(x)") }
        return keptShape(x, keepDims: keepDims)
    }
    func keptShape(_ x: Shape, keepDims: Bool) -> Shape {
        Shape((0..<x.rank).compactMap { axes.contains($0) ? (keepDims ? 1 : nil) : x[$0] })
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0]
        let count = axes.reduce(1) { $0 * x.shape[$1] }
        reduceSum(x, axes: Set(axes), scale: mean ? 1 / Float(max(count, 1)) : 1, into: call.output)
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.shape(g.input(0))
        return [
            try g.gradient(0) {
                var dy = g.gradOutput
                if !keepDims { dy = try g.emit("grad_keepdims", ReshapeOp(keptShape(x, keepDims: true)), [dy]) }
                let spread = try g.emit("grad_broadcast", BroadcastToOp(x), [dy])
                guard mean else { return spread }
                let count = axes.reduce(1) { $0 * x[$1] }
                return try g.emit("grad_input", UnaryOp(.affine(scale: 1 / Float(max(count, 1)), shift: 0)), [spread])
            }
        ]
    }
}
