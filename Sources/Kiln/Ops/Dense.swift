import CKernels

/// y = x · Wᵀ + b. Inputs: x [N, in], weight [out, in], optional bias [out].
public struct LinearOp: Primitive {
    public init() {}
    public var kind: String { "Linear" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        let x = inputs[0], w = inputs[1]
        try expectRank(x, 2, "input")
        guard w.rank == 2, x[1] == w[1] else {
            throw ShapeRuleError("input \(x) has \(x[1]) features but weight \(w) expects in_features=\(w.rank == 2 ? w[1] : -1)")
        }
        if inputs.count == 3, inputs[2] != [w[0]] {
            throw ShapeRuleError("bias \(inputs[2]) does not match weight \(w)")
        }
        return [x[0], w[0]]
    }
    public func forward(_ call: KernelCall) {
        let x = call.inputs[0].shape, w = call.inputs[1].shape
        let bias = call.inputs.count > 2 ? call.inputs[2].floats : nil
        kn_linear_forward(
            call.inputs[0].floats, call.inputs[1].floats, bias, call.output.floats,
            Int32(x[0]), Int32(x[1]), Int32(w[0]))
    }
}

/// Softmax or log-softmax over the last dimension of [N, K].
public struct SoftmaxOp: Primitive {
    public var log: Bool
    public init(log: Bool) { self.log = log }
    public var kind: String { log ? "LogSoftmax" : "Softmax" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        try expectRank(inputs[0], 2, "input")
        return inputs[0]
    }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        (log ? kn_log_softmax : kn_softmax)(call.inputs[0].floats, call.output.floats, Int32(s[0]), Int32(s[1]))
    }
}

/// Mean cross-entropy of logits [N, K] against int64 labels [N]; a scalar.
public struct CrossEntropyOp: Primitive {
    public init() {}
    public var kind: String { "CrossEntropyLoss" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2 else { throw ShapeRuleError("expects logits and labels") }
        try expectRank(inputs[0], 2, "logits")
        guard inputs[1] == [inputs[0][0]] else {
            throw ShapeRuleError("labels \(inputs[1]) do not match logits \(inputs[0]) (expected [\(inputs[0][0])])")
        }
        return []
    }
    public func forward(_ call: KernelCall) throws {
        let s = call.inputs[0].shape
        var bad: Int32 = -1
        call.output.floats.pointee = kn_cross_entropy(call.inputs[0].floats, call.inputs[1].int64s, Int32(s[0]), Int32(s[1]), &bad)
        if bad >= 0 {
            throw KernelError(node: call.node, detail: "label \(call.inputs[1].int64s[Int(bad)]) at index \(bad) outside [0, \(s[1]))")
        }
    }
}

extension LinearOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.input(0), w = g.input(1), dy = g.gradOutput
        return [
            try g.gradient(0) { try g.emit("grad_input", LinearBackwardOp(wrt: .input), [dy, w]) },
            try g.gradient(1) { try g.emit("grad_weight", LinearBackwardOp(wrt: .weight), [x, dy]) },
            try g.gradient(2) { try g.emit("grad_bias", ChannelSumOp(), [dy]) },
        ]
    }
}

/// Linear backward: dx = dy·W (inputs dy, W) or dW = dyᵀ·x (inputs x, dy).
public struct LinearBackwardOp: Primitive {
    public enum Target: Sendable { case input, weight }
    public let wrt: Target
    public var kind: String { wrt == .input ? "LinearBackwardData" : "LinearBackwardWeight" }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        switch wrt {
        case .input: return [inputs[0][0], inputs[1][1]]
        case .weight: return [inputs[1][1], inputs[0][1]]
        }
    }
    public func forward(_ call: KernelCall) {
        switch wrt {
        case .input:
            let dy = call.inputs[0].shape, w = call.inputs[1].shape
            kn_linear_backward_data(
                call.inputs[0].floats, call.inputs[1].floats, call.output.floats, Int32(dy[0]), Int32(w[1]), Int32(w[0]))
        case .weight:
            let x = call.inputs[0].shape, dy = call.inputs[1].shape
            kn_linear_backward_weight(
                call.inputs[0].floats, call.inputs[1].floats, call.output.floats, Int32(x[0]), Int32(x[1]), Int32(dy[1]))
        }
    }
}

extension SoftmaxOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", SoftmaxBackwardOp(log: log), [g.output, g.gradOutput]) }]
    }
}

/// Backward of softmax / log-softmax from their output. Inputs: y, dy.
public struct SoftmaxBackwardOp: Primitive {
    public let log: Bool
    public var kind: String { log ? "LogSoftmaxBackward" : "SoftmaxBackward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_softmax_backward(call.inputs[0].floats, call.inputs[1].floats, call.output.floats, Int32(s[0]), Int32(s[1]), log ? 1 : 0)
    }
}

extension CrossEntropyOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        [try g.gradient(0) { try g.emit("grad_input", CrossEntropyBackwardOp(), [g.input(0), g.input(1), g.gradOutput]) }, nil]
    }
}

/// (softmax(logits) − onehot(labels)) / N · dloss. Inputs: logits, labels, dloss.
public struct CrossEntropyBackwardOp: Primitive {
    public var kind: String { "CrossEntropyLossBackward" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_cross_entropy_backward(
            call.inputs[0].floats, call.inputs[1].int64s, call.inputs[2].floats.pointee,
            Int32(s[0]), Int32(s[1]), call.output.floats)
    }
}
