import CKernels

/// A pointwise function with its derivative: one table entry per function (tensor_ops.h), so a
/// new activation is one case here, one in the C switch and one in its float64 definition.
public enum UnaryFunction: Sendable, Equatable, CustomStringConvertible {
    case sigmoid, tanh, neg, exp, log, sqrt, reciprocal, abs, softplus, softsign, silu, hardSwish
    /// clamp(alpha·x + beta, 0, 1) (ONNX HardSigmoid; PyTorch's is alpha 1/6, beta 1/2).
    case hardSigmoid(alpha: Float, beta: Float)
    case leakyReLU(alpha: Float)
    case clip(min: Float, max: Float)
    /// scale·x + shift.
    case affine(scale: Float, shift: Float)
    case pow(Float)
    case elu(alpha: Float)
    case selu(alpha: Float, gamma: Float)

    /// The kernel's function number and its two parameters.
    var kernel: (fn: kn_unary_fn, a: Float, b: Float) {
        switch self {
        case .sigmoid: (KN_UNARY_SIGMOID, 0, 0)
        case .tanh: (KN_UNARY_TANH, 0, 0)
        case .neg: (KN_UNARY_NEG, 0, 0)
        case .exp: (KN_UNARY_EXP, 0, 0)
        case .log: (KN_UNARY_LOG, 0, 0)
        case .sqrt: (KN_UNARY_SQRT, 0, 0)
        case .reciprocal: (KN_UNARY_RECIPROCAL, 0, 0)
        case .abs: (KN_UNARY_ABS, 0, 0)
        case .softplus: (KN_UNARY_SOFTPLUS, 0, 0)
        case .softsign: (KN_UNARY_SOFTSIGN, 0, 0)
        case .silu: (KN_UNARY_SILU, 0, 0)
        case .hardSwish: (KN_UNARY_HARD_SWISH, 0, 0)
        case let .hardSigmoid(alpha, beta): (KN_UNARY_HARD_SIGMOID, alpha, beta)
        case let .leakyReLU(alpha): (KN_UNARY_LEAKY_RELU, alpha, 0)
        case let .clip(lo, hi): (KN_UNARY_CLIP, lo, hi)
        case let .affine(scale, shift): (KN_UNARY_AFFINE, scale, shift)
        case let .pow(p): (KN_UNARY_POW, p, 0)
        case let .elu(alpha): (KN_UNARY_ELU, alpha, 0)
        case let .selu(alpha, gamma): (KN_UNARY_SELU, alpha, gamma)
        }
    }

    public var description: String {
        switch self {
        case .sigmoid: "Sigmoid"
        case .tanh: "Tanh"
        case .neg: "Neg"
        case .exp: "Exp"
        case .log: "Log"
        case .sqrt: "Sqrt"
        case .reciprocal: "Reciprocal"
        case .abs: "Abs"
        case .softplus: "Softplus"
        case .softsign: "Softsign"
        case .silu: "SiLU"
        case .hardSwish: "Hardswish"
        case .hardSigmoid: "Hardsigmoid"
        case .leakyReLU: "LeakyReLU"
        case .clip: "Clip"
        case .affine: "Affine"
        case .pow: "Pow"
        case .elu: "ELU"
        case .selu: "SELU"
        }
    }
}

/// y = f(x) for a `UnaryFunction`.
public struct UnaryOp: Primitive {
    public let function: UnaryFunction
    public init(_ function: UnaryFunction) { self.function = function }
    public var kind: String { function.description }
    public var attributes: String {
        switch function {
        case let .hardSigmoid(a, b): "alpha=\(a) beta=\(b)"
        case let .leakyReLU(a), let .elu(a): "alpha=\(a)"
        case let .clip(lo, hi): "min=\(lo) max=\(hi)"
        case let .affine(s, t): "scale=\(s) shift=\(t)"
        case let .pow(p): "p=\(p)"
        case let .selu(a, g): "alpha=\(a) gamma=\(g)"
        default: ""
        }
    }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let (fn, a, b) = function.kernel
        kn_unary(Int32(fn.rawValue), a, b, call.inputs[0].floats, call.output.floats, Int64(call.output.count))
    }
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", UnaryBackwardOp(function: function), [g.input(0), g.output, g.gradOutput]) }]
    }
}

/// dx = dy · f'(x). Inputs: x, y = f(x), dy.
public struct UnaryBackwardOp: Primitive {
    public let function: UnaryFunction
    public var kind: String { "\(function)Backward" }
    public var inPlaceInput: Int? { 2 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let (fn, a, b) = function.kernel
        kn_unary_backward(
            Int32(fn.rawValue), a, b, call.inputs[0].floats, call.inputs[1].floats, call.inputs[2].floats, call.output.floats,
            Int64(call.output.count))
    }
}
