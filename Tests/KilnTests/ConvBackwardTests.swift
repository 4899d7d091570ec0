import CKernels
import Testing
@testable import Kiln

/// Convolution gradients against the adjoint identities ⟨conv(x, w), dy⟩ = ⟨x, dx⟩ = ⟨w, dw⟩,
/// accumulated in double, over the GEMM, chunked, depthwise and Winograd paths.
struct ConvBackwardTests {
    static let cases: [(n: Int, c: Int, side: Int, o: Int, k: Int, stride: Int, pad: Int, groups: Int)] = [
        // Winograd needs ≥ 256 2×2 output tiles in the batch (kn_conv2d_winograd_eligible).
        (2, 128, 24, 128, 3, 1, 1, 1),  // Winograd
        (2, 64, 23, 96, 3, 1, 1, 1),  // Winograd from 64 channels, odd size
        (12, 64, 9, 64, 3, 1, 1, 1),  // Winograd on small odd maps (partial edge tiles)
        (2, 256, 8, 256, 3, 1, 1, 1),  // too few tiles for Winograd: im2col GEMM with K = 2304
        (2, 32, 10, 64, 3, 1, 1, 1),  // below: im2col GEMM, 3×3
        (11, 128, 9, 136, 3, 1, 1, 1),  // Winograd, odd size, chunks
        // Winograd filter gradients with one accumulator for all threads (α²·o·c floats past 8 MB):
        // one chunk of tiles, and 540 tiles in two.
        (4, 256, 14, 256, 3, 1, 1, 1),
        (15, 256, 22, 256, 3, 1, 1, 1),
        (2, 8, 9, 12, 3, 2, 1, 1),  // im2col GEMM, strided
        (4, 8, 6, 8, 1, 1, 0, 1),  // pointwise
        (2, 8, 8, 8, 3, 1, 1, 8),  // depthwise
        // Depthwise: stride 2 on odd maps, rows wide enough to be written in place (stride 1 and
        // 2), 5×5 taps (past the unrolled nine), a stride past the kernel (input phases no tap reads).
        (3, 6, 13, 6, 3, 2, 1, 6),
        (1, 3, 70, 3, 3, 1, 1, 3),
        (1, 2, 133, 2, 3, 2, 1, 2),
        (2, 4, 11, 4, 5, 2, 2, 4),
        (2, 3, 10, 3, 2, 3, 0, 3),
        (2, 8, 6, 12, 3, 1, 1, 2),  // grouped
    ]

    @Test(arguments: 0..<cases.count)
    func adjointIdentitiesHold(_ index: Int) throws {
        let c = Self.cases[index]
        let x = randomTensor([c.n, c.c, c.side, c.side], seed: 1)
        let w = randomTensor([c.o, c.c / c.groups, c.k, c.k], seed: 2)
        let op = Conv2DOp(stride: (c.stride, c.stride), padding: .symmetric(c.pad), groups: c.groups)
        let y = try apply(op, [x, w])
        let dy = randomTensor(y.shape, seed: 3)
        let dx = try apply(Conv2DBackwardDataOp(forward: op, inputShape: x.shape), [dy, w])
        let dw = try apply(Conv2DBackwardFilterOp(forward: op, weightShape: w.shape), [x, dy])
        func dot(_ a: Tensor, _ b: Tensor) -> Double { (0..<a.count).reduce(0.0) { $0 + Double(a.floats[$1]) * Double(b.floats[$1]) } }
        let reference = dot(y, dy)
        #expect(abs(dot(x, dx) - reference) < 1e-4 * abs(reference) + 1e-3, "\(c)")
        #expect(abs(dot(w, dw) - reference) < 1e-4 * abs(reference) + 1e-3, "\(c)")
    }

    /// Filter gradients element by element against the float64 reference, where few outputs take
    /// the dot-product GEMM (pointwise and 3-channel stems; rows, columns and pixels off its
    /// blocks) and where the packed GEMM stays.
    @Test(arguments: [
        (4, 8, 23, 29, 13, 1, 1, 0),  // pointwise, 13 × 8 outputs, 667 pixels
        (3, 3, 33, 35, 16, 3, 2, 1),  // MobileNetV2's stem, 16 × 27
        (4, 40, 11, 37, 70, 1, 1, 0),  // 70 × 40 outputs: still dot products
        (2, 24, 9, 9, 200, 1, 1, 0),  // 200 × 24: the packed GEMM
        (4, 256, 14, 14, 256, 3, 1, 1),  // Winograd with one accumulator shared by the threads
    ])
    func filterGradientMatchesTheFloat64Reference(_ c: (n: Int, c: Int, h: Int, w: Int, o: Int, k: Int, stride: Int, pad: Int)) throws {
        let x = randomTensor([c.n, c.c, c.h, c.w], seed: 4)
        let op = Conv2DOp(stride: (c.stride, c.stride), padding: .symmetric(c.pad))
        let wShape: Shape = [c.o, c.c, c.k, c.k]
        let y = try op.outputShape(for: [x.shape, wShape])
        let dy = randomTensor(y, seed: 5)
        let dw = try apply(Conv2DBackwardFilterOp(forward: op, weightShape: wShape), [x, dy])
        var d = op.descriptor(x.shape, wShape)
        #expect(kn_conv2d_geometry(&d) == 0)
        var reference = [Double](repeating: 0, count: wShape.count)
        kr_conv2d_backward_filter(&d, x.scalars.map(Double.init), dy.scalars.map(Double.init), &reference)
        #expect(relativeError(dw.scalars, reference) < 1e-5, "\(c)")
    }
}
