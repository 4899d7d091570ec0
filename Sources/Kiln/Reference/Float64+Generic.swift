import Foundation

// Float64 definitions of the composite tier's primitives: index arithmetic spelled out element
// by element, independent of the strided C kernels they check.

/// Offset of element `i` (row-major in `shape`) through `strides`.
private func offset(of i: Int, in shape: Shape, strides: [Int64]) -> Int {
    var rest = i, result = 0
    for k in stride(from: shape.rank - 1, through: 0, by: -1) {
        result += (rest % shape[k]) * Int(strides[k])
        rest /= shape[k]
    }
    return result
}

extension UnaryFunction {
    func evaluate(_ x: Double) -> Double {
        switch self {
        case .sigmoid: 1 / (1 + Foundation.exp(-x))
        case .tanh: Foundation.tanh(x)
        case .neg: -x
        case .exp: Foundation.exp(x)
        case .log: Foundation.log(x)
        case .sqrt: x.squareRoot()
        case .reciprocal: 1 / x
        case .abs: Swift.abs(x)
        case .softplus: Foundation.log1p(Foundation.exp(x))
        case .softsign: x / (1 + Swift.abs(x))
        case .silu: x / (1 + Foundation.exp(-x))
        case .hardSwish: x * Swift.min(Swift.max(x / 6 + 0.5, 0), 1)
        case let .hardSigmoid(a, b): Swift.min(Swift.max(Double(a) * x + Double(b), 0), 1)
        case let .leakyReLU(a): x > 0 ? x : Double(a) * x
        case let .clip(lo, hi): Swift.min(Swift.max(x, Double(lo)), Double(hi))
        case let .affine(s, t): Double(s) * x + Double(t)
        case let .pow(p): Foundation.pow(x, Double(p))
        case let .elu(a): x > 0 ? x : Double(a) * Foundation.expm1(x)
        case let .selu(a, g): Double(g) * (x > 0 ? x : Double(a) * Foundation.expm1(x))
        }
    }

    /// f'(x), written from the definition (not from the output, as the float32 kernel does).
    func slope(_ x: Double) -> Double {
        switch self {
        case .sigmoid:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 - s)
        case .tanh: return 1 / Foundation.pow(Foundation.cosh(x), 2)
        case .neg: return -1
        case .exp: return Foundation.exp(x)
        case .log: return 1 / x
        case .sqrt: return 0.5 / x.squareRoot()
        case .reciprocal: return -1 / (x * x)
        case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .softplus: return 1 / (1 + Foundation.exp(-x))
        case .softsign: return 1 / Foundation.pow(1 + Swift.abs(x), 2)
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return s + x * s * (1 - s)
        case .hardSwish: return x < -3 ? 0 : (x > 3 ? 1 : (2 * x + 3) / 6)
        case let .hardSigmoid(a, b):
            let t = Double(a) * x + Double(b)
            return t > 0 && t < 1 ? Double(a) : 0
        case let .leakyReLU(a): return x > 0 ? 1 : Double(a)
        case let .clip(lo, hi): return x >= Double(lo) && x <= Double(hi) ? 1 : 0
        case let .affine(s, _): return Double(s)
        case let .pow(p): return Double(p) * Foundation.pow(x, Double(p) - 1)
        case let .elu(a): return x > 0 ? 1 : Double(a) * Foundation.exp(x)
        case let .selu(a, g): return Double(g) * (x > 0 ? 1 : Double(a) * Foundation.exp(x))
        }
    }
}

extension UnaryOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0].doubles
        return .map(call.outputShape) { function.evaluate(x[$0]) }
    }
}

extension UnaryBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (x, dy) = (inputs[0].doubles, inputs[2].doubles)
        return .map(call.outputShape) { dy[$0] * function.slope(x[$0]) }
    }
}

extension BinaryOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let out = call.outputShape
        let (a, b) = (inputs[0], inputs[1])
        let (sa, sb) = (broadcastStrides(a.shape, to: out), broadcastStrides(b.shape, to: out))
        return .map(out) { i in
            let u = a.doubles[offset(of: i, in: out, strides: sa)], v = b.doubles[offset(of: i, in: out, strides: sb)]
            switch op {
            case .add: return u + v
            case .sub: return u - v
            case .mul: return u * v
            case .div: return u / v
            case .max: return Swift.max(u, v)
            case .min: return Swift.min(u, v)
            }
        }
    }
}

extension BroadcastToOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let strides = broadcastStrides(inputs[0].shape, to: shape)
        return .map(shape) { inputs[0].doubles[offset(of: $0, in: shape, strides: strides)] }
    }
}

/// Sums x into an output whose element for x's index i is at `target(i)`.
private func accumulate(_ x: Float64Tensor, into shape: Shape, scale: Double, target: (Int) -> Int) -> Float64Tensor {
    let y = Float64Tensor(zeros: shape)
    for i in 0..<x.count { y.doubles[target(i)] += x.doubles[i] }
    for i in 0..<y.count { y.doubles[i] *= scale }
    return y
}

extension SumToShapeOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0]
        let strides = broadcastStrides(shape, to: x.shape)
        return accumulate(x, into: shape, scale: 1) { offset(of: $0, in: x.shape, strides: strides) }
    }
}

extension ReduceOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0], kept = keptShape(x.shape, keepDims: true)
        let strides = broadcastStrides(kept, to: x.shape)
        let count = axes.reduce(1) { $0 * x.shape[$1] }
        return accumulate(x, into: call.outputShape, scale: mean ? 1 / Double(max(count, 1)) : 1) {
            offset(of: $0, in: x.shape, strides: strides)
        }
    }
}

extension TransposeOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let strides = contiguousStrides(inputs[0].shape)
        let permuted = perm.map { strides[$0] }
        return .map(call.outputShape) { inputs[0].doubles[offset(of: $0, in: call.outputShape, strides: permuted)] }
    }
}

extension SliceOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (base, strides) = layout(in: inputs[0].shape)
        return .map(call.outputShape) { inputs[0].doubles[base + offset(of: $0, in: call.outputShape, strides: strides)] }
    }
}

extension SliceBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (base, strides) = slice.layout(in: inputShape), dy = inputs[0]
        return accumulate(dy, into: inputShape, scale: 1) { base + offset(of: $0, in: dy.shape, strides: strides) }
    }
}

extension ConcatOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let shapes = inputs.map(\.shape), y = Float64Tensor(zeros: call.outputShape)
        for (i, x) in inputs.enumerated() {
            let (base, strides) = part(i, of: shapes).layout(in: call.outputShape)
            for j in 0..<x.count { y.doubles[base + offset(of: j, in: x.shape, strides: strides)] = x.doubles[j] }
        }
        return y
    }
}
