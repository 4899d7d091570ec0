import CKernels

/// Conv → BatchNorm [→ + residual] [→ ReLU/ReLU6] as one step (built by the fusion pass).
/// Inputs: x, weight, [conv bias], gamma, beta, running_mean, running_var, num_batches_tracked, [residual].
///
/// * On running statistics (inference, or frozen BN): BN is folded into the conv's weights and
///   bias at the start of the call (one pass over the weights), and the residual add and the
///   activation run in the GEMM's epilogue: one pass over the output, nothing saved.
/// * On batch statistics: the conv output z is written with per-image channel sums taken in the
///   epilogue (cache-hot), then one pass normalises, adds the residual and activates. Outputs: y, the
///   saved z (what BN backward needs; y gives the activation mask and is the next layer's input),
///   and the [2, c] scale and shift that pass applied (y = act(z·scale + shift [+ residual]), so a
///   recomputation of y needs no second look at the moments).
public struct FusedConvBNOp: Primitive {
    public typealias Activation = EpilogueActivation

    public let conv: Conv2DOp
    public let bn: BatchNormOp
    public let hasConvBias: Bool
    public let hasResidual: Bool
    public let activation: Activation

    public var kind: String { "FusedConvBN" + (hasResidual ? "Add" : "") + activation.kindSuffix }
    public var attributes: String { conv.attributes + (bn.usesRunningStatistics ? " bn=folded" : " bn=batch-stats") }

    var bnOffset: Int { hasConvBias ? 3 : 2 }

    public func outputShapes(for inputs: [Shape]) throws -> [Shape] {
        let z = try conv.outputShape(for: Array(inputs[0..<bnOffset]))
        _ = try bn.outputShape(for: [z] + Array(inputs[bnOffset..<(bnOffset + 5)]))
        if hasResidual, inputs[bnOffset + 5] != z {
            throw ShapeRuleError("residual \(inputs[bnOffset + 5]) does not match the conv output \(z)")
        }
        return bn.usesRunningStatistics ? [z] : [z, z, [2, z[1]]]
    }

    public func outputShape(for inputs: [Shape]) throws -> Shape { try outputShapes(for: inputs)[0] }

    public func forward(_ call: KernelCall) throws {
        let x = call.inputs[0], w = call.inputs[1]
        let bias = hasConvBias ? call.inputs[2].floats : nil
        let (gamma, beta, mean, variance) = (
            call.inputs[bnOffset], call.inputs[bnOffset + 1], call.inputs[bnOffset + 2], call.inputs[bnOffset + 3]
        )
        let residual = hasResidual ? call.inputs[bnOffset + 5].floats : nil
        var d = conv.geometry(x.shape, w.shape)
        let y = call.output
        if bn.usesRunningStatistics || call.mode == .inference {
            // The folded filters and bias: kept by an executor whose weights are constant (folded on
            // its first run, with the filters the conv's path prepares from them: Winograd's
            // transformed filters), else folded per call into scratch (every element is written).
            let count = w.count + w.shape[0]
            var scratch: UnsafeMutablePointer<Float>? = nil
            defer { scratch?.deallocate() }
            let folded: UnsafeMutablePointer<Float>
            var prepared: UnsafeMutablePointer<Float>? = nil
            if let kept = call.derived?.tensors, !kept.isEmpty {
                folded = kept[0].floats
                prepared = kept.count > 1 ? kept[1].floats : nil
            } else {
                if let derived = call.derived {
                    guard let kept = Tensor(allocating: [count]) else {
                        throw ExecutionError.outOfMemory(node: call.node, bytes: count * 4)
                    }
                    derived.tensors = [kept]
                    folded = kept.floats
                } else {
                    scratch = .allocate(capacity: count)
                    folded = scratch!
                }
                kn_fold_batchnorm(
                    w.floats, bias, gamma.floats, beta.floats, mean.floats, variance.floats, bn.eps,
                    Int32(w.shape[0]), Int64(w.shape.count / w.shape[0]), folded, folded + w.count)
                // Without memory for them, the conv prepares its filters per call, as without an executor.
                let preparedCount = Int(kn_conv2d_prepared_floats(&d))
                if let derived = call.derived, preparedCount > 0, let kept = Tensor(allocating: [preparedCount]) {
                    kn_conv2d_prepare_weights(&d, folded, kept.floats)
                    derived.tensors.append(kept)
                    prepared = kept.floats
                }
            }
            var epilogue = kn_conv_epilogue(stats: nil, residual: residual, activation: activation.kernelCode)
            kn_conv2d_forward_prepared(&d, x.floats, folded, prepared, folded + w.count, y.floats, &epilogue)
            return
        }
        let z = call.outputs[1], scaleShift = call.outputs[2].floats
        let n = Int(d.n), c = Int(d.o), hw = Int(d.oh * d.ow)
        let stats = UnsafeMutablePointer<Double>.allocate(capacity: n * c * 2)
        defer { stats.deallocate() }
        var epilogue = kn_conv_epilogue(stats: stats, residual: nil, activation: 0)
        kn_conv2d_forward_fused(&d, x.floats, w.floats, bias, z.floats, &epilogue)
        if let sync = call.batchNormSynchronization {
            var moments = [Double](repeating: 0, count: 2 * c)
            kn_batchnorm_sum_image_stats(stats, Int32(n), Int32(c), &moments)
            try sync.sum(&moments)
            kn_batchnorm_apply_moments(
                z.floats, y.floats, moments, sync.count(hw: hw), gamma.floats, beta.floats, mean.floats, variance.floats,
                bn.momentum, bn.eps, residual, activation.kernelCode, Int32(n), Int32(c), Int32(hw), scaleShift)
            call.inputs[bnOffset + 4].int64s.pointee += 1
            return
        }
        kn_batchnorm_apply_training(
            z.floats, y.floats, stats, gamma.floats, beta.floats, mean.floats, variance.floats,
            bn.momentum, bn.eps, residual, activation.kernelCode, Int32(n), Int32(c), Int32(hw), scaleShift)
        call.inputs[bnOffset + 4].int64s.pointee += 1
    }

    public func vjp(_ g: GradientBuilder) throws -> [Graph.ValueID?] {
        let x = g.input(0), w = g.input(1), gamma = g.input(bnOffset), dy = g.gradOutput
        let y = g.output
        var grads = [Graph.ValueID?](repeating: nil, count: g.node.inputs.count)
        let dz: Graph.ValueID
        var masked: Graph.ValueID? = nil
        func maskedGradient() throws -> Graph.ValueID {
            if let masked { return masked }
            let m = try activation.gradient(g, output: y, gradOutput: dy)
            masked = m
            return m
        }
        if bn.usesRunningStatistics {
            guard !g.needs[bnOffset], !g.needs[bnOffset + 1] else {
                throw GraphError.invalid("fused BN '\(g.node.name)' runs on running statistics but its affine parameters train")
            }
            dz = try g.emit("grad_bn", BatchNormFrozenBackwardOp(eps: bn.eps), [maskedGradient(), gamma, g.input(bnOffset + 3)])
        } else {
            let z = g.node.outputs[1]
            // Without a residual, the activation's mask follows from z and the saved scale and shift
            // (what the forward activated), so the two passes need not read y as well.
            let fromZ = activation != .none && !hasResidual
            let maskInputs = activation == .none ? [z, dy] : [z, fromZ ? g.node.outputs[2] : y, dy]
            let reduced = try g.emit(
                "grad_reduce", FusedBNBackwardReduceOp(activation: activation, eps: bn.eps, masksFromScaleShift: fromZ), maskInputs)
            dz = try g.emit(
                "grad_bn", FusedBNBackwardInputOp(activation: activation, masksFromScaleShift: fromZ), maskInputs + [gamma, reduced])
            grads[bnOffset] = try g.gradient(bnOffset) { try g.emit("grad_weight_bn", SelectRowOp(row: 1), [reduced]) }
            grads[bnOffset + 1] = try g.gradient(bnOffset + 1) { try g.emit("grad_bias_bn", SelectRowOp(row: 0), [reduced]) }
        }
        grads[0] = try g.gradient(0) { try g.emit("grad_input", Conv2DBackwardDataOp(forward: conv, inputShape: g.shape(x)), [dz, w]) }
        grads[1] = try g.gradient(1) { try g.emit("grad_weight", Conv2DBackwardFilterOp(forward: conv, weightShape: g.shape(w)), [x, dz]) }
        if hasConvBias { grads[2] = try g.gradient(2) { try g.emit("grad_bias", ChannelSumOp(), [dz]) } }
        if hasResidual { grads[bnOffset + 5] = try g.gradient(bnOffset + 5) { try maskedGradient() } }
        return grads
    }
}

/// The activation-mask input of the fused backward ops (inputs[1], when there is an activation):
/// y, or the step's [2, c] scale and shift (the mask then from z·scale + shift).
private func maskPointers(_ call: KernelCall, _ activation: EpilogueActivation, fromScaleShift: Bool)
    -> (y: UnsafeMutablePointer<Float>?, scaleShift: UnsafeMutablePointer<Float>?)
{
    guard activation != .none else { return (nil, nil) }
    return fromScaleShift ? (nil, call.inputs[1].floats) : (call.inputs[1].floats, nil)
}

/// (Σg, Σg·ẑ, μ, 1/σ) in one pass; inputs z, [y or scale and shift], dy (g = dy masked by the
/// activation).
public struct FusedBNBackwardReduceOp: Primitive {
    public let activation: EpilogueActivation
    public let eps: Float
    public var masksFromScaleShift = false
    public var kind: String { "FusedBNBackwardReduce" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { [4, inputs[0][1]] }
    public func forward(_ call: KernelCall) throws {
        let s = call.inputs[0].shape
        let mask = maskPointers(call, activation, fromScaleShift: masksFromScaleShift)
        if let sync = call.batchNormSynchronization {
            try synchronizedBackwardReduce(
                z: call.inputs[0], y: mask.y, scaleShift: mask.scaleShift, dy: call.inputs.last!, activation: activation,
                eps: eps, sync, into: call.output)
            return
        }
        kn_fused_bn_backward_reduce(
            call.inputs[0].floats, mask.y, mask.scaleShift, call.inputs.last!.floats, activation.kernelCode, eps,
            Int32(s[0]), Int32(s[1]), Int32(s[2] * s[3]), call.output.floats)
    }
}

/// dz of the fused step; inputs z, [y or scale and shift], dy, gamma, reduced.
public struct FusedBNBackwardInputOp: Primitive {
    public let activation: EpilogueActivation
    public var masksFromScaleShift = false
    public var kind: String { "FusedBNBackwardInput" }
    public func outputShape(for inputs: [Shape]) throws -> Shape { inputs[0] }
    /// dz may overwrite dy.
    public var inPlaceInput: Int? { activation == .none ? 1 : 2 }
    public func forward(_ call: KernelCall) throws {
        let s = call.inputs[0].shape
        let k = activation == .none ? 1 : 2
        let mask = maskPointers(call, activation, fromScaleShift: masksFromScaleShift)
        let hw = s[2] * s[3]
        let reduced = try call.batchNormSynchronization?.globalReduction(call.inputs[k + 2])
        kn_fused_bn_backward_input(
            call.inputs[0].floats, mask.y, mask.scaleShift, call.inputs[k].floats, activation.kernelCode,
            call.inputs[k + 1].floats, (reduced ?? call.inputs[k + 2]).floats,
            call.batchNormSynchronization?.count(hw: hw) ?? Double(s[0] * hw),
            Int32(s[0]), Int32(s[1]), Int32(hw), call.output.floats)
    }
}

/// y = act(z·scale + shift) of a batch-statistics fused step without a residual, recomputed in the
/// backward pass from the saved z and the step's saved [2, c] scale and shift (built by the
/// rematerialization pass): the floats the forward applied, so y is bit-equal to the forward's, in
/// one pass and with no collective under synchronised BN. Inputs: z, scale and shift.
public struct FusedBNRecomputeOp: Primitive {
    public let activation: EpilogueActivation
    public var kind: String { "FusedBNRecompute" + activation.kindSuffix }
    public func outputShape(for inputs: [Shape]) throws -> Shape {
        guard inputs.count == 2, inputs[1] == [2, inputs[0][1]] else {
            throw ShapeRuleError("a recompute takes z and its [2, channels] scale and shift, got \(inputs)")
        }
        return inputs[0]
    }
    public func forward(_ call: KernelCall) throws {
        let z = call.inputs[0], s = z.shape
        kn_batchnorm_apply_scale_shift(
            z.floats, call.output.floats, call.inputs[1].floats, activation.kernelCode, Int32(s[0]), Int32(s[1]),
            Int32(s[2] * s[3]))
    }
}
