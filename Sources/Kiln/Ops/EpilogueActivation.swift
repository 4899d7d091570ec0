/// The activations a fused convolution applies in its epilogue — the one table of what each is:
/// the standalone op the fusion pass absorbs, its code in the C kernels (`kernels/activation.h`),
/// its name in fused kinds, and its gradient. A new fused activation is a case here and one in
/// each switch of activation.h.
public enum EpilogueActivation: Int32, CaseIterable, Sendable {
    case none = 0, relu = 1, relu6 = 2

    /// The activation `op` computes, when an epilogue can apply it.
    public init?(fusing op: any Primitive) {
        switch op {
        case is ReLUOp: self = .relu
        case is ReLU6Op: self = .relu6
        default: return nil
        }
    }

    /// The op computing this activation on its own (nil for `.none`): what unfused graphs hold.
    public var standaloneOp: (any Primitive)? {
        switch self {
        case .none: nil
        case .relu: ReLUOp()
        case .relu6: ReLU6Op()
        }
    }

    /// The code the C kernels take: the raw value, equal to `KN_ACT_*` (GraphTests checks it).
    var kernelCode: Int32 { rawValue }

    /// The suffix of a fused kind: `FusedConvBNAdd` + `ReLU6`.
    public var kindSuffix: String {
        switch self {
        case .none: ""
        case .relu: "ReLU"
        case .relu6: "ReLU6"
        }
    }

    /// dL/dz from dL/dy = `gradOutput`, the mask taken from the output y (as PyTorch's
    /// threshold_backward), so nothing but y is saved; the node is `<node>.<name>`.
    func gradient(
        _ g: GradientBuilder, output y: Graph.ValueID, gradOutput dy: Graph.ValueID, name: String = "grad_act"
    ) throws -> Graph.ValueID {
        switch self {
        case .none: dy
        case .relu: try g.emit(name, MaskedGradientOp(upper: .infinity), [y, dy])
        case .relu6: try g.emit(name, MaskedGradientOp(upper: 6), [y, dy])
        }
    }
}
