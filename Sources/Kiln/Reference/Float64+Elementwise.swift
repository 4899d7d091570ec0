import CKernels

// Float64 definitions of the elementwise and bookkeeping ops (plain Swift: nothing hot here).

extension AddOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (a, b) = (inputs[0].doubles, inputs[1].doubles)
        return .map(call.outputShape) { a[$0] + b[$0] }
    }
}

extension ReLUOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0].doubles
        return .map(call.outputShape) { x[$0] > 0 ? x[$0] : 0 }
    }
}

extension ReLU6Op: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let x = inputs[0].doubles
        return .map(call.outputShape) { min(x[$0] > 0 ? x[$0] : 0, 6) }
    }
}

extension MaskedGradientOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let (y, dy) = (inputs[0].doubles, inputs[1].doubles)
        let upper = Double(upper)
        return .map(call.outputShape) { y[$0] > 0 && y[$0] < upper ? dy[$0] : 0 }
    }
}

/// x scaled by the dropout mask of `forwardNode` (the float32 kernel draws it; survivors are
/// scaled by 1/(1-p) in float64).
private func applyDropout(_ x: Float64Tensor, p: Float, forwardNode: String, _ call: Float64Call) -> Float64Tensor {
    guard call.mode == .training else { return .map(call.outputShape) { x.doubles[$0] } }
    let mask = Tensor(zeros: x.shape)
    kn_fill_constant(mask.floats, Int64(x.count), 1)
    kn_dropout(mask.floats, mask.floats, nil, Int64(x.count), p, dropoutSeed(call.seed, forwardNode))
    let scale = 1 / (1 - Double(p))
    return .map(call.outputShape) { mask.floats[$0] != 0 ? x.doubles[$0] * scale : 0 }
}

extension DropoutOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        applyDropout(inputs[0], p: p, forwardNode: call.node, call)
    }
}

extension DropoutBackwardOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        applyDropout(inputs[0], p: p, forwardNode: forwardNode, call)
    }
}

extension FlattenOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        .map(call.outputShape) { inputs[0].doubles[$0] }
    }
}

extension ReshapeOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        .map(call.outputShape) { inputs[0].doubles[$0] }
    }
}

extension SelectRowOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        let offset = row * call.outputShape.count
        return .map(call.outputShape) { inputs[0].doubles[offset + $0] }
    }
}

extension FillOp: Float64Definition {
    public func evaluate(_ inputs: [Float64Tensor], _ call: Float64Call) throws -> Float64Tensor {
        .map(call.outputShape) { _ in Double(value) }
    }
}
