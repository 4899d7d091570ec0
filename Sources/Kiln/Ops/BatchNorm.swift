import CKernels

/// Batch normalisation over channels of an NCHW tensor (or the features of [N, C]).
/// Inputs: x, weight (gamma), bias (beta), running_mean, running_var, num_batches_tracked.
/// Inference uses the running statistics; training uses batch statistics and updates the running
/// ones in place with PyTorch's rule (momentum 0.1, unbiased variance for the running estimate).
public struct BatchNormOp: Primitive {
    public var eps: Float
    public var momentum: Float
    /// Normalise with the running statistics and leave them unchanged, even in training mode
    /// (set by the freezing pass on BN layers whose affine parameters are frozen).
    public var usesRunningStatistics: Bool

    public init(eps: Float = 1e-5, momentum: Float = 0.1, usesRunningStatistics: Bool = false) {
        self.eps = eps
        self.momentum = momentum
        self.usesRunningStatistics = usesRunningStatistics
    }

    public var kind: String { "BatchNorm2d" }
    public var attributes: String { "eps=\(eps)" + (usesRunningStatistics ? " running-stats" : "") }
    public var inPlaceInput: Int? { 0 }

    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 6 else { throw ShapeRuleError("expects x, weight, bias, running_mean, running_var, num_batches_tracked") }
        let x = inputs[0]
        guard x.rank == 4 || x.rank == 2 else { throw ShapeRuleError("input must be [N,C,H,W] or [N,C], got \(x)") }
        for (i, what) in ["weight", "bias", "running_mean", "running_var"].enumerated() where inputs[i + 1] != [x[1]] {
            throw ShapeRuleError("\(what) \(inputs[i + 1]) does not match the \(x[1]) channels of input \(x)")
        }
        return x
    }

    public func forward(_ call: KernelCall) throws {
        let x = call.inputs[0]
        let n = Int32(x.shape[0]), c = Int32(x.shape[1])
        let hw = Int32(x.shape.count / max(x.shape[0] * x.shape[1], 1))
        let (gamma, beta, mean, variance) = (call.inputs[1], call.inputs[2], call.inputs[3], call.inputs[4])
        switch usesRunningStatistics ? .inference : call.mode {
        case .inference:
            kn_batchnorm_inference(
                x.floats, call.output.floats, gamma.floats, beta.floats,
                mean.floats, variance.floats, eps, n, c, hw)
        case .training:
            if let sync = call.batchNormSynchronization {
                var moments = [Double](repeating: 0, count: 2 * Int(c))
                kn_channel_moments(x.floats, n, c, hw, &moments)
                try sync.sum(&moments)
                kn_batchnorm_apply_moments(
                    x.floats, call.output.floats, moments, sync.count(hw: Int(hw)), gamma.floats, beta.floats,
                    mean.floats, variance.floats, momentum, eps, nil, 0, n, c, hw, nil)
                call.inputs[5].int64s.pointee += 1
                return
            }
            kn_batchnorm_training(
                x.floats, call.output.floats, gamma.floats, beta.floats,
                mean.floats, variance.floats, momentum, eps, n, c, hw)
            call.inputs[5].int64s.pointee += 1
        }
    }
}

extension BatchNormOp {
    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.input(0), gamma = g.input(1), dy = g.gradOutput
        if usesRunningStatistics {
            guard !g.needs[1], !g.needs[2] else {
                throw GraphError.invalid("BN '\(g.node.name)' runs on running statistics but its affine parameters train")
            }
            return [
                try g.gradient(0) { try g.emit("grad_input", BatchNormFrozenBackwardOp(eps: eps), [dy, gamma, g.input(4)]) },
                nil, nil, nil, nil, nil,
            ]
        }
        let reduced = try g.emit("grad_reduce", BatchNormBackwardReduceOp(eps: eps), [x, dy])
        return [
            try g.gradient(0) { try g.emit("grad_input", BatchNormBackwardInputOp(), [x, dy, gamma, reduced]) },
            try g.gradient(1) { try g.emit("grad_weight", SelectRowOp(row: 1), [reduced]) },
            try g.gradient(2) { try g.emit("grad_bias", SelectRowOp(row: 0), [reduced]) },
            nil, nil, nil,
        ]
    }
}

/// Recomputes the batch statistics and reduces dy: [4, C] = (Σdy, Σdy·x̂, mean, 1/σ).
/// Inputs: x, dy.
public struct BatchNormBackwardReduceOp: Primitive {
    public let eps: Float
    public var kind: String { "BatchNormBackwardReduce" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { [4, inputs[0][1]] }
    public func forward(_ call: KernelCall) throws {
        let s = call.inputs[0].shape
        if let sync = call.batchNormSynchronization {
            try synchronizedBackwardReduce(
                z: call.inputs[0], y: nil, scaleShift: nil, dy: call.inputs[1], activation: .none, eps: eps, sync,
                into: call.output)
            return
        }
        kn_batchnorm_backward_reduce(
            call.inputs[0].floats, call.inputs[1].floats, eps, Int32(s[0]), Int32(s[1]),
            Int32(s.count / (s[0] * s[1])), call.output.floats)
    }
}

/// dx of training-mode BN. Inputs: x, dy, gamma, the reduce node's output.
public struct BatchNormBackwardInputOp: Primitive {
    public var kind: String { "BatchNormBackwardInput" }
    public var inPlaceInput: Int? { 1 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) throws {
        let s = call.inputs[0].shape
        let hw = s.count / (s[0] * s[1])
        let reduced = try call.batchNormSynchronization?.globalReduction(call.inputs[3])
        kn_batchnorm_backward_input(
            call.inputs[0].floats, call.inputs[1].floats, call.inputs[2].floats, (reduced ?? call.inputs[3]).floats,
            call.batchNormSynchronization?.count(hw: hw) ?? Double(s[0] * hw),
            Int32(s[0]), Int32(s[1]), Int32(hw), call.output.floats)
    }
}

/// dx of BN on running statistics (a per-channel scale). Inputs: dy, gamma, running_var.
public struct BatchNormFrozenBackwardOp: Primitive {
    public let eps: Float
    public var kind: String { "BatchNormFrozenBackward" }
    public var inPlaceInput: Int? { 0 }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    public func forward(_ call: KernelCall) {
        let s = call.inputs[0].shape
        kn_batchnorm_frozen_backward(
            call.inputs[0].floats, call.inputs[1].floats, call.inputs[2].floats, eps,
            Int32(s[0]), Int32(s[1]), Int32(s.count / (s[0] * s[1])), call.output.floats)
    }
}

/// BN backward's reduction over every rank's batch: this rank's totals, the moments summed over
/// the ranks, then (local Σg and Σg·ẑ, global μ and 1/σ) as the unsynchronised kernels give.
func synchronizedBackwardReduce(
    z: Tensor, y: UnsafeMutablePointer<Float>?, scaleShift: UnsafeMutablePointer<Float>?, dy: Tensor, activation: EpilogueActivation,
    eps: Float, _ sync: BatchNormSynchronization, into out: Tensor
) throws {
    let s = z.shape
    let (n, c, hw) = (s[0], s[1], s.count / (s[0] * s[1]))
    var totals = [Double](repeating: 0, count: 4 * c)
    kn_fused_bn_backward_totals(
        z.floats, y, scaleShift, dy.floats, activation.kernelCode, Int32(n), Int32(c), Int32(hw), &totals)
    var moments = (0..<c).flatMap { [totals[4 * $0], totals[4 * $0 + 1]] }
    try sync.sum(&moments)
    kn_fused_bn_backward_finish(moments, totals, sync.count(hw: hw), eps, Int32(c), out.floats)
}
