import CKernels

// Float64 definitions of the spatial layers and their gradients (kernels in reference64.c).

extension Conv2DOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        var d = geometry(inputs[0].shape, inputs[1].shape)
        let bias = inputs.count > 2 ? inputs[2].doubles : nil
        return .computing(call.outputShape) { kr_conv2d_forward(&d, inputs[0].doubles, inputs[1].doubles, bias, $0) }
    }
}

extension Conv2DBackwardDataOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        var d = forward.geometry(inputShape, inputs[1].shape)
        return .computing(call.outputShape) { kr_conv2d_backward_data(&d, inputs[0].doubles, inputs[1].doubles, $0) }
    }
}

extension Conv2DBackwardFilterOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        var d = forward.geometry(inputs[0].shape, weightShape)
        return .computing(call.outputShape) { kr_conv2d_backward_filter(&d, inputs[0].doubles, inputs[1].doubles, $0) }
    }
}

extension ChannelSumOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        return .computing(call.outputShape) {
            kr_channel_sum(inputs[0].doubles, $0, Int32(s[0]), Int32(s[1]), Int32(s.count / (s[0] * s[1])))
        }
    }
}

/// (n, c, h·w) of an NCHW or [N, C] tensor, as the BN kernels take them.
private func channelLayout(_ s: Shape) -> (Int32, Int32, Int32) {
    (Int32(s[0]), Int32(s[1]), Int32(s.count / max(s[0] * s[1], 1)))
}

extension BatchNormOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (n, c, hw) = channelLayout(inputs[0].shape)
        let (x, gamma, beta) = (inputs[0].doubles, inputs[1].doubles, inputs[2].doubles)
        return .computing(call.outputShape) { y in
            if usesRunningStatistics || call.mode == .inference {
                kr_batchnorm_inference(x, y, gamma, beta, inputs[3].doubles, inputs[4].doubles, Double(eps), n, c, hw)
            } else {
                kr_batchnorm_training(x, y, gamma, beta, Double(eps), n, c, hw)
            }
        }
    }
}

extension BatchNormBackwardReduceOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (n, c, hw) = channelLayout(inputs[0].shape)
        return .computing(call.outputShape) {
            kr_batchnorm_backward_reduce(inputs[0].doubles, inputs[1].doubles, Double(eps), n, c, hw, $0)
        }
    }
}

extension BatchNormBackwardInputOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (n, c, hw) = channelLayout(inputs[0].shape)
        return .computing(call.outputShape) {
            kr_batchnorm_backward_input(inputs[0].doubles, inputs[1].doubles, inputs[2].doubles, inputs[3].doubles, n, c, hw, $0)
        }
    }
}

extension BatchNormFrozenBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (n, c, hw) = channelLayout(inputs[0].shape)
        return .computing(call.outputShape) {
            kr_batchnorm_frozen_backward(inputs[0].doubles, inputs[1].doubles, inputs[2].doubles, Double(eps), n, c, hw, $0)
        }
    }
}

extension Pool2DOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        var d = geometry(inputs[0].shape)
        return .computing(call.outputShape) { y in
            switch reduction {
            case .max: kr_maxpool2d_forward(&d, inputs[0].doubles, y)
            case let .average(include): kr_avgpool2d_forward(&d, inputs[0].doubles, y, include ? 1 : 0)
            }
        }
    }
}

extension Pool2DBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        var d = forward.geometry(inputs[0].shape)
        return .computing(call.outputShape) { dx in
            switch forward.reduction {
            case .max: kr_maxpool2d_backward(&d, inputs[0].doubles, inputs[1].doubles, dx)
            case let .average(include): kr_avgpool2d_backward(&d, inputs[1].doubles, dx, include ? 1 : 0)
            }
        }
    }
}

extension GlobalAvgPoolOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape, plane = s[2] * s[3]
        let x = inputs[0].doubles
        return .map(call.outputShape) { p in (0..<plane).reduce(0.0) { $0 + x[p * plane + $1] } / Double(plane) }
    }
}

extension GlobalAvgPoolBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let plane = inputShape[2] * inputShape[3]
        let dy = inputs[0].doubles
        return .map(call.outputShape) { i in dy[i / plane] / Double(plane) }
    }
}

extension ZeroPad2DOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputs[0].shape
        return .computing(call.outputShape) {
            kr_zero_pad2d(
                inputs[0].doubles, $0, Int32(s[0]), Int32(s[1]), Int32(s[2]), Int32(s[3]),
                Int32(padding.top), Int32(padding.left), Int32(padding.bottom), Int32(padding.right))
        }
    }
}

extension ZeroPad2DBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let s = inputShape
        return .computing(call.outputShape) {
            kr_zero_pad2d_backward(
                inputs[0].doubles, $0, Int32(s[0]), Int32(s[1]), Int32(s[2]), Int32(s[3]),
                Int32(padding.top), Int32(padding.left), Int32(padding.bottom), Int32(padding.right))
        }
    }
}
