import CKernels
import Foundation
@testable import Kiln

/// A tensor of uniform values in [-1, 1) from a fixed seed.
func randomTensor(_ shape: Shape, seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    let t = Tensor(zeros: shape)
    kn_fill_uniform(t.floats, Int64(t.count), low, high, seed)
    return t
}

/// Runs one op on concrete tensors, as the executor would.
func apply(_ op: any Primitive, _ inputs: [Tensor], mode: Mode = .inference, seed: UInt64 = 1) throws -> Tensor {
    let shape = try op.outputShape(for: inputs.map(\.shape))
    let out = Tensor(zeros: shape, dtype: op.outputDType)
    try op.forward(KernelCall(node: "test", inputs: inputs, outputs: [out], mode: mode, seed: seed))
    return out
}

/// max |a - b| / max(max |b|, tiny): error relative to the reference's scale.
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) elements")
    var diff = 0.0, scale = 1e-30
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(Double(x) - y))
        scale = max(scale, abs(y))
    }
    return diff / scale
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }

/// NCHW index.
@inline(__always) func at(_ s: Shape, _ n: Int, _ c: Int, _ y: Int, _ x: Int) -> Int {
    ((n * s[1] + c) * s[2] + y) * s[3] + x
}
