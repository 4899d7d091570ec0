import CKernels

/// 2-D convolution (cross-correlation, as PyTorch). Inputs: x [N,C,H,W], weight [O, C/groups, kh, kw],
/// optional bias [O]. Padding may be asymmetric (top, left, bottom, right).
public struct Conv2DOp: Primitive {
    public var stride: (h: Int, w: Int)
    public var padding: Padding
    public var groups: Int

    public init(stride: (Int, Int) = (1, 1), padding: Padding = .zero, groups: Int = 1) {
        self.stride = (stride.0, stride.1)
        self.padding = padding
        self.groups = groups
    }

    public var kind: String { "Conv2d" }
    public var attributes: String {
        "s\(stride.h)x\(stride.w) p\(padding) g\(groups)"
    }

    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2 || inputs.count == 3 else { throw ShapeRuleError("expects x, weight[, bias]") }
        let x = inputs[0], w = inputs[1]
        try expectRank(x, 4, "input")
        try expectRank(w, 4, "weight")
        guard x[1] == w[1] * groups else {
            throw ShapeRuleError("input \(x) has \(x[1]) channels but weight \(w) with groups=\(groups) expects \(w[1] * groups)")
        }
        guard w[0] % groups == 0 else { throw ShapeRuleError("weight \(w): \(w[0]) output channels not divisible by groups=\(groups)") }
        if inputs.count == 3, inputs[2] != [w[0]] {
            throw ShapeRuleError("bias \(inputs[2]) does not match weight \(w) (expected [\(w[0])])")
        }
        var d = descriptor(x, w)
        guard kn_conv2d_geometry(&d) == 0 else {
            throw ShapeRuleError("kernel \(w[2])x\(w[3]) with padding \(padding) does not fit input \(x)")
        }
        return [x[0], w[0], Int(d.oh), Int(d.ow)]
    }

    func descriptor(_ x: Shape, _ w: Shape) -> kn_conv2d_desc {
        kn_conv2d_desc(
            n: Int32(x[0]), c: Int32(x[1]), h: Int32(x[2]), w: Int32(x[3]),
            o: Int32(w[0]), kh: Int32(w[2]), kw: Int32(w[3]),
            sh: Int32(stride.h), sw: Int32(stride.w),
            pt: Int32(padding.top), pl: Int32(padding.left),
            pb: Int32(padding.bottom), pr: Int32(padding.right),
            groups: Int32(groups), oh: 0, ow: 0)
    }

    /// The descriptor with its output size filled in (shapes already checked by `outputShape`).
    func geometry(_ x: Shape, _ w: Shape) -> kn_conv2d_desc {
        var d = descriptor(x, w)
        _ = kn_conv2d_geometry(&d)
        return d
    }

    public func forward(_ call: KernelCall) {
        var d = geometry(call.inputs[0].shape, call.inputs[1].shape)
        let bias = call.inputs.count > 2 ? call.inputs[2].floats : nil
        kn_conv2d_forward(&d, call.inputs[0].floats, call.inputs[1].floats, bias, call.output.floats)
    }
}

/// Spatial padding, possibly asymmetric (Keras' ZeroPadding2D [[0,1],[0,1]] before stride-2 convs).
public struct Padding: Sendable, Equatable, CustomStringConvertible {
    public var top, left, bottom, right: Int

    public init(top: Int, left: Int, bottom: Int, right: Int) {
        (self.top, self.left, self.bottom, self.right) = (top, left, bottom, right)
    }

    public static func symmetric(_ p: Int) -> Padding { Padding(top: p, left: p, bottom: p, right: p) }
    public static let zero = Padding.symmetric(0)

    public var isSymmetric: Bool { top == bottom && left == right && top == left }
    public var description: String {
        isSymmetric ? "\(top)" : "(t\(top),l\(left),b\(bottom),r\(right))"
    }
}

extension Conv2DOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.input(0), w = g.input(1), dy = g.gradOutput
        return [
            try g.gradient(0) { try g.emit("grad_input", Conv2DBackwardDataOp(forward: self, inputShape: g.shape(x)), [dy, w]) },
            try g.gradient(1) { try g.emit("grad_weight", Conv2DBackwardFilterOp(forward: self, weightShape: g.shape(w)), [x, dy]) },
            try g.gradient(2) { try g.emit("grad_bias", ChannelSumOp(), [dy]) },
        ]
    }
}

/// dx of a convolution: inputs dy, weight.
public struct Conv2DBackwardDataOp: Primitive {
    public let forward: Conv2DOp
    public let inputShape: Shape
    public var kind: String { "Conv2dBackwardData" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard try forward.outputShape(for: [inputShape, inputs[1]]) == inputs[0] else {
            throw ShapeRuleError("gradient \(inputs[0]) does not match the convolution of \(inputShape) by \(inputs[1])")
        }
        return inputShape
    }
    public func forward(_ call: KernelCall) {
        var d = forward.geometry(inputShape, call.inputs[1].shape)
        kn_conv2d_backward_data(&d, call.inputs[0].floats, call.inputs[1].floats, call.output.floats)
    }
}

/// dW of a convolution: inputs x, dy.
public struct Conv2DBackwardFilterOp: Primitive {
    public let forward: Conv2DOp
    public let weightShape: Shape
    public var kind: String { "Conv2dBackwardFilter" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard try forward.outputShape(for: [inputs[0], weightShape]) == inputs[1] else {
            throw ShapeRuleError("gradient \(inputs[1]) does not match the convolution of \(inputs[0]) by \(weightShape)")
        }
        return weightShape
    }
    public func forward(_ call: KernelCall) {
        var d = forward.geometry(call.inputs[0].shape, weightShape)
        kn_conv2d_backward_filter(&d, call.inputs[0].floats, call.inputs[1].floats, call.output.floats)
    }
}

/// Sum over every axis but the channel axis 1: the bias gradient of conv ([N,C,H,W]) and linear ([N,C]) layers.
public struct ChannelSumOp: Primitive {
    public init() {}
    public var kind: String { "ChannelSum" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs[0].rank >= 2 else { throw ShapeRuleError("input \(inputs[0]) has no channel axis") }
        return [inputs[0][1]]
    }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_conv2d_backward_bias(call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]), Int32(s.count / (s[0] * s[1])))
    }
}
