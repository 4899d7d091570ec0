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

/// x scaled by the dropout mask of `forwardNode`, drawn here from the generator's definition
/// (kn_dropout's contract: element i is dropped iff mix64(seed ^ mix64(i)) < p·2⁶⁴), survivors
/// scaled by 1/(1-p) in float64 — an implementation independent of the float32 kernel it checks.
private func applyDropout(_ x: Float64Tensor, p: Float, forwardNode: String, _ call: Float64Call) -> Float64Tensor {
    guard call.mode == .training, p > 0 else { return .map(call.outputShape) { x.doubles[$0] } }
    guard p < 1 else { return .map(call.outputShape) { _ in 0 } }
    let seed = dropoutSeed(call.seed, forwardNode), threshold = UInt64(Double(p) * 0x1p64)
    let scale = 1 / (1 - Double(p))
    return .map(call.outputShape) { i in splitMix64(seed ^ splitMix64(UInt64(i))) < threshold ? 0 : x.doubles[i] * scale }
}

/// SplitMix64's finaliser.
private func splitMix64(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
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
