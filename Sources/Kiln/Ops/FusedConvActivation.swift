import CKernels

/// Conv (+ bias) [→ + residual] → ReLU/ReLU6 as one step, the residual add and the activation in
/// the GEMM's epilogue (built by the fusion pass for convolutions without a BatchNorm after them:
/// PyTorch's eval-mode ONNX export folds BN into the conv's weights and bias).
/// Inputs: x, weight, [bias], [residual].
public struct FusedConvActivationOp: Primitive {
    public let conv: Conv2DOp
    public let hasBias: Bool
    public let hasResidual: Bool
    public let activation: EpilogueActivation

    public var kind: String { "FusedConv" + (hasResidual ? "Add" : "") + activation.kindSuffix }
    public var attributes: String { conv.attributes }

    var residualIndex: Int { hasBias ? 3 : 2 }

    public func outputShape(for inputs: [Shape]) throws -> Shape {
        let y = try conv.outputShape(for: Array(inputs[0..<(hasBias ? 3 : 2)]))
        if hasResidual, inputs[residualIndex] != y {
            throw ShapeRuleError("residual \(inputs[residualIndex]) does not match the conv output \(y)")
        }
        return y
    }

    public func forward(_ call: KernelCall) {
        let x = call.inputs[0], w = call.inputs[1]
        var d = conv.geometry(x.shape, w.shape)
        var epilogue = kn_conv_epilogue(
            stats: nil, residual: hasResidual ? call.inputs[residualIndex].floats : nil, activation: activation.kernelCode)
        kn_conv2d_forward_fused(&d, x.floats, w.floats, hasBias ? call.inputs[2].floats : nil, call.output.floats, &epilogue)
    }

    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.input(0), w = g.input(1)
        let needed = g.needs.contains(true)
        guard needed else { return [Graph.ValueID?](repeating: nil, count: g.node.inputs.count) }
        let dz = try activation.gradient(g, output: g.output, gradOutput: g.gradOutput)
        var grads = [Graph.ValueID?](repeating: nil, count: g.node.inputs.count)
        grads[0] = try g.gradient(0) { try g.emit("grad_input", Conv2DBackwardDataOp(forward: conv, inputShape: g.shape(x)), [dz, w]) }
        grads[1] = try g.gradient(1) { try g.emit("grad_weight", Conv2DBackwardFilterOp(forward: conv, weightShape: g.shape(w)), [x, dz]) }
        if hasBias { grads[2] = try g.gradient(2) { try g.emit("grad_bias", ChannelSumOp(), [dz]) } }
        if hasResidual { grads[residualIndex] = g.gradient(residualIndex) { dz } }
        return grads
    }
}
