import CKernels

/// Batch normalisation over channels of an NCHW tensor (or the features of [N, C]).
/// Inputs: x, weight (gamma), bias (beta), running_mean, running_var, num_batches_tracked.
/// Inference uses the running statistics; training uses batch statistics and updates the running
/// ones in place with PyTorch's rule (momentum 0.1, unbiased variance for the running estimate).
public struct BatchNormOp: Primitive {
    public var eps: Float
    public var momentum: Float

    public init(eps: Float = 1e-5, momentum: Float = 0.1) {
        self.eps = eps
        self.momentum = momentum
    }

    public var kind: String { "BatchNorm2d" }
    public var attributes: String { "eps=\(eps)" }

    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 6 else { throw ShapeRuleError("expects x, weight, bias, running_mean, running_var, num_batches_tracked") }
        let x = inputs[0]
        guard x.rank == 4 || x.rank == 2 else { throw ShapeRuleError("input must be [N,C,H,W] or [N,C], got \(x)") }
        for (i, what) in ["weight", "bias", "running_mean", "running_var"].enumerated() where inputs[i + 1] != [x[1]] {
            throw ShapeRuleError("\(what) \(inputs[i + 1]) does not match the \(x[1]) channels of input \(x)")
        }
        return x
    }

    public func forward(_ call: KernelCall) {
        let x = call.inputs[0]
        let n = Int32(x.shape[0]), c = Int32(x.shape[1])
        let hw = Int32(x.shape.count / max(x.shape[0] * x.shape[1], 1))
        let (gamma, beta, mean, variance) = (call.inputs[1], call.inputs[2], call.inputs[3], call.inputs[4])
        switch call.mode {
        case .inference:
            kn_batchnorm_inference(x.floats, call.output.floats, gamma.floats, beta.floats,
                                   mean.floats, variance.floats, eps, n, c, hw)
        case .training:
            kn_batchnorm_training(x.floats, call.output.floats, gamma.floats, beta.floats,
                                  mean.floats, variance.floats, momentum, eps, n, c, hw, nil, nil)
            call.inputs[5].int64s.pointee += 1
        }
    }
}
