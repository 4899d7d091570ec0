import CKernels

/// Max or average pooling over square or rectangular windows. Padding is symmetric unless
/// `endPadding` (bottom, right) differs; `ceilMode` keeps a last partial window (PyTorch's rule:
/// it must start inside the input or its leading padding). Windows are clipped to the input.
public struct Pool2DOp: Primitive {
    public enum Reduction: Sendable { case max, average(countIncludePad: Bool) }

    public var reduction: Reduction
    public var kernel: (h: Int, w: Int)
    public var stride: (h: Int, w: Int)
    public var padding: (h: Int, w: Int)
    /// Bottom and right padding when they differ from top and left (ONNX pads).
    public var endPadding: (h: Int, w: Int)?
    public var ceilMode = false

    public init(_ reduction: Reduction, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0)) {
        self.reduction = reduction
        self.kernel = (kernel.0, kernel.1)
        self.stride = (stride.0, stride.1)
        self.padding = (padding.0, padding.1)
    }

    public var kind: String {
        if case .max = reduction { return "MaxPool2d" }
        return "AvgPool2d"
    }
    public var attributes: String {
        var text = "k\(kernel.h)x\(kernel.w) s\(stride.h)x\(stride.w) p\(padding.h)x\(padding.w)"
        if let end = endPadding, end != padding { text += " end\(end.h)x\(end.w)" }
        return ceilMode ? text + " ceil" : text
    }

    func descriptor(_ x: Shape) -> kn_pool2d_desc {
        kn_pool2d_desc(
            n: Int32(x[0]), c: Int32(x[1]), h: Int32(x[2]), w: Int32(x[3]),
            kh: Int32(kernel.h), kw: Int32(kernel.w), sh: Int32(stride.h), sw: Int32(stride.w),
            ph: Int32(padding.h), pw: Int32(padding.w), oh: 0, ow: 0)
    }

    /// The descriptor with its output size filled in (shape already checked by `outputShape`).
    func geometry(_ x: Shape) -> kn_pool2d_desc {
        var d = descriptor(x)
        _ = kn_pool2d_geometry(&d)
        resize(&d)
        return d
    }

    /// The output size with end padding and ceil mode (the kernels clip windows to the input).
    private func resize(_ d: inout kn_pool2d_desc) {
        guard ceilMode || endPadding != nil else { return }
        let end = endPadding ?? padding
        func size(_ n: Int32, _ begin: Int, _ end: Int, _ k: Int32, _ s: Int32) -> Int32 {
            let span = Int(n) + begin + end - Int(k), step = Int(s)
            var out = (ceilMode ? (span + step - 1) / step : span / step) + 1
            if ceilMode, (out - 1) * step >= Int(n) + begin { out -= 1 }
            return Int32(out)
        }
        d.oh = size(d.h, padding.h, end.h, d.kh, d.sh)
        d.ow = size(d.w, padding.w, end.w, d.kw, d.sw)
    }

    public func outputShape(for inputs: [Shape]) throws -> Shape {
        try expectRank(inputs[0], 4, "input")
        var d = descriptor(inputs[0])
        let end = endPadding ?? padding
        guard end.h >= 0, end.w >= 0, Int(d.h) + padding.h + end.h >= kernel.h, Int(d.w) + padding.w + end.w >= kernel.w else {
            throw ShapeRuleError("window \(kernel.h)x\(kernel.w) (padding \(padding.h)x\(padding.w)) does not fit input \(inputs[0])")
        }
        guard kn_pool2d_geometry(&d) == 0 || endPadding != nil else {
            throw ShapeRuleError("window \(kernel.h)x\(kernel.w) (padding \(padding.h)x\(padding.w)) does not fit input \(inputs[0])")
        }
        resize(&d)
        return [inputs[0][0], inputs[0][1], Int(d.oh), Int(d.ow)]
    }

    public func forward(_ call: KernelCall) {
        var d = geometry(call.inputs[0].shape)
        switch reduction {
        case .max: kn_maxpool2d_forward(&d, call.inputs[0].floats, call.output.floats)
        case let .average(include): kn_avgpool2d_forward(&d, call.inputs[0].floats, call.output.floats, include ? 1 : 0)
        }
    }
}

/// Mean over H and W: [N,C,H,W] → [N,C,1,1] (AdaptiveAvgPool2d(1), Keras GlobalAveragePooling2D
/// keeps [N,C] by following it with Flatten).
public struct GlobalAvgPoolOp: Primitive {
    public init() {}
    public var kind: String { "AdaptiveAvgPool2d" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        try expectRank(inputs[0], 4, "input")
        return [inputs[0][0], inputs[0][1], 1, 1]
    }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_global_avgpool_forward(call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]), Int32(s[2] * s[3]))
    }
}

/// Zero padding, possibly asymmetric (Keras ZeroPadding2D).
public struct ZeroPad2DOp: Primitive {
    public var padding: Padding
    public init(_ padding: Padding) { self.padding = padding }
    public var kind: String { "ZeroPad2d" }
    public var attributes: String { "p\(padding)" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        let x = inputs[0]
        try expectRank(x, 4, "input")
        guard min(padding.top, padding.left, padding.bottom, padding.right) >= 0 else {
            throw ShapeRuleError("negative padding \(padding)")
        }
        return [x[0], x[1], x[2] + padding.top + padding.bottom, x[3] + padding.left + padding.right]
    }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_zero_pad2d(
            call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]), Int32(s[2]), Int32(s[3]),
            Int32(padding.top), Int32(padding.left), Int32(padding.bottom), Int32(padding.right))
    }
}

extension Pool2DOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", Pool2DBackwardOp(forward: self), [g.input(0), g.gradOutput]) }]
    }
}

/// Backward of max pooling (the argmax is recomputed from x, nothing is saved) and of average
/// pooling. Inputs: x, dy.
public struct Pool2DBackwardOp: Primitive {
    public let forward: Pool2DOp
    public var kind: String { forward.kind + "Backward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        var d = forward.geometry(call.inputs[0].shape)
        switch forward.reduction {
        case .max: kn_maxpool2d_backward(&d, call.inputs[0].floats, call.inputs[1].floats, call.output.floats)
        case let .average(include): kn_avgpool2d_backward(&d, call.inputs[1].floats, call.output.floats, include ? 1 : 0)
        }
    }
}

extension GlobalAvgPoolOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", GlobalAvgPoolBackwardOp(inputShape: g.shape(g.input(0))), [g.gradOutput]) }]
    }
}

/// Spreads dy [N,C,1,1] evenly over each H×W plane.
public struct GlobalAvgPoolBackwardOp: Primitive {
    public let inputShape: Shape
    public var kind: String { "AdaptiveAvgPool2dBackward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputShape }
    public func forward(_ call: KernelCall) {
        let s = inputShape
        kn_global_avgpool_backward(call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]), Int32(s[2] * s[3]))
    }
}

extension ZeroPad2DOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [
            try g.gradient(0) {
                try g.emit("grad_input", ZeroPad2DBackwardOp(padding: padding, inputShape: g.shape(g.input(0))), [g.gradOutput])
            }
        ]
    }
}

/// Crops the padding off dy.
public struct ZeroPad2DBackwardOp: Primitive {
    public let padding: Padding
    public let inputShape: Shape
    public var kind: String { "ZeroPad2dBackward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputShape }
    public func forward(_ call: KernelCall) {
        let s = inputShape
        kn_zero_pad2d_backward(
            call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]), Int32(s[2]), Int32(s[3]),
            Int32(padding.top), Int32(padding.left), Int32(padding.bottom), Int32(padding.right))
    }
}
