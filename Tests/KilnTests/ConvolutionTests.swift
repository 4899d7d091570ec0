import CKernels
import Testing
@testable import Kiln

/// The fast convolution (the GEMM over stride-phase planes, Winograd, grouped im2col, depthwise
/// direct) against the naive seven-loop reference over the configurations the zoo uses and the corner cases around them.
struct ConvolutionTests {
    struct Case: CustomStringConvertible, Sendable {
        var n = 2, c = 4, h = 9, w = 7, o = 6, k = 3, stride = 1
        var padding = Padding.symmetric(1)
        var groups = 1, bias = true
        var description: String { "n\(n) c\(c) \(h)x\(w) o\(o) k\(k) s\(stride) p\(padding) g\(groups) bias \(bias)" }
    }

    static let cases: [Case] = [
        Case(),
        Case(n: 1, bias: false),
        Case(n: 3, c: 3, h: 16, w: 16, o: 8, k: 7, stride: 2, padding: .symmetric(3), bias: false),  // ResNet stem
        Case(c: 8, h: 5, w: 5, o: 16, k: 1, stride: 1, padding: .zero),  // pointwise GEMM
        // Pointwise convs read their input in place: several bands of rows whose last tile runs
        // past the image (through the zero-padded tail), by image and (batch 1) by channel; K past KC.
        Case(n: 2, c: 24, h: 56, w: 57, o: 520, k: 1, stride: 1, padding: .zero),
        Case(n: 1, c: 300, h: 30, w: 31, o: 300, k: 1, stride: 1, padding: .zero, bias: false),
        Case(c: 8, h: 6, w: 6, o: 4, k: 1, stride: 2, padding: .zero, bias: false),  // downsample
        Case(c: 6, h: 8, w: 8, o: 6, k: 3, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1), groups: 6, bias: false),
        Case(c: 6, h: 7, w: 7, o: 6, k: 3, stride: 1, padding: .symmetric(1), groups: 6),  // depthwise
        // Depthwise rows wide enough to be written in place (stride 1, and stride 2 with TF's
        // padding), odd maps at stride 2, 5×5 taps with asymmetric padding, a stride past the kernel.
        Case(n: 3, c: 3, h: 5, w: 70, o: 3, k: 3, stride: 1, padding: .symmetric(1), groups: 3),
        Case(c: 2, h: 6, w: 135, o: 2, k: 3, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1), groups: 2),
        Case(n: 3, c: 5, h: 13, w: 11, o: 5, k: 3, stride: 2, padding: .symmetric(1), groups: 5, bias: false),
        Case(c: 4, h: 9, w: 12, o: 4, k: 5, stride: 1, padding: Padding(top: 2, left: 1, bottom: 0, right: 3), groups: 4),
        Case(c: 3, h: 10, w: 11, o: 3, k: 2, stride: 3, padding: .zero, groups: 3),
        Case(c: 4, h: 6, w: 6, o: 8, k: 3, stride: 1, padding: .symmetric(1), groups: 2),  // grouped
        Case(c: 3, h: 6, w: 9, o: 5, k: 3, stride: 2, padding: Padding(top: 2, left: 0, bottom: 0, right: 1)),
        // Three stride phases per axis, and a stride past the kernel (one phase, the rest skipped).
        Case(n: 5, c: 5, h: 11, w: 13, o: 7, k: 5, stride: 3, padding: Padding(top: 1, left: 2, bottom: 0, right: 1)),
        Case(n: 3, c: 7, h: 10, w: 9, o: 13, k: 1, stride: 3, padding: .symmetric(1)),
        // K = 360 in two blocks of the GEMM's KC (256); stems wide enough for several bands of
        // output rows, by image (batch 2) and by channel (batch 1).
        Case(n: 2, c: 40, h: 70, w: 66, o: 50, k: 3, stride: 2, padding: .symmetric(1)),
        Case(n: 2, c: 3, h: 160, w: 150, o: 64, k: 7, stride: 2, padding: .symmetric(3)),
        Case(n: 1, c: 3, h: 224, w: 224, o: 64, k: 7, stride: 2, padding: .symmetric(3), bias: false),
        // Winograd F(4×4, 3×3) (≥ 256 2×2 output tiles): odd sizes leave partial edge tiles; batch 9
        // splits into chunks.
        Case(n: 9, c: 128, h: 9, w: 11, o: 128, k: 3, stride: 1, padding: .symmetric(1)),
        Case(n: 1, c: 64, h: 33, w: 32, o: 72, k: 3, stride: 1, padding: .symmetric(1), bias: false),
        Case(n: 4, c: 64, h: 13, w: 30, o: 72, k: 3, stride: 1, padding: .symmetric(1)),
        // Chunks of 64 tiles (L2-sized for 64 channels) that start and end inside images of 110.
        Case(n: 3, c: 64, h: 40, w: 44, o: 64, k: 3, stride: 1, padding: .symmetric(1)),
        // Transformed weights past 8 MB (256 channels): chunks shared by the threads, products
        // split by output channel, epilogues of the images each chunk finished.
        Case(n: 4, c: 256, h: 14, w: 15, o: 256, k: 3, stride: 1, padding: .symmetric(1)),
        // The same shapes with too few tiles: im2col GEMM.
        Case(n: 3, c: 256, h: 9, w: 11, o: 256, k: 3, stride: 1, padding: .symmetric(1)),
        Case(n: 1, c: 256, h: 8, w: 8, o: 264, k: 3, stride: 1, padding: .symmetric(1), bias: false),
    ]

    @Test func winogradIsUsedWhereItApplies() {
        var d = Conv2DOp(padding: .symmetric(1)).descriptor([8, 256, 16, 16], [256, 256, 3, 3])
        #expect(kn_conv2d_geometry(&d) == 0 && kn_conv2d_winograd_eligible(&d) == 1)
        // Too few tiles to amortise the weight transform (ResNet-18's layer4 at batch 1): im2col.
        var small = Conv2DOp(padding: .symmetric(1)).descriptor([1, 512, 7, 7], [512, 512, 3, 3])
        #expect(kn_conv2d_geometry(&small) == 0 && kn_conv2d_winograd_eligible(&small) == 0)
        var strided = Conv2DOp(stride: (2, 2), padding: .symmetric(1)).descriptor([2, 256, 8, 8], [256, 256, 3, 3])
        #expect(kn_conv2d_geometry(&strided) == 0 && kn_conv2d_winograd_eligible(&strided) == 0)
        var thin = Conv2DOp(padding: .symmetric(1)).descriptor([2, 32, 8, 8], [64, 32, 3, 3])
        #expect(kn_conv2d_geometry(&thin) == 0 && kn_conv2d_winograd_eligible(&thin) == 0)
    }

    /// Filters prepared once (Winograd's transform) give the same output as transforming per call;
    /// a buffer whose header names another layout is ignored, and one with the right header is
    /// really read (garbage behind it changes the output).
    @Test func preparedWeightsComputeTheSameAndAForeignLayoutIsIgnored() throws {
        let x = randomTensor([3, 64, 20, 21], seed: 1), w = randomTensor([72, 64, 3, 3], seed: 2)
        let bias = randomTensor([72], seed: 3)
        var d = Conv2DOp(padding: .symmetric(1)).descriptor(x.shape, w.shape)
        #expect(kn_conv2d_geometry(&d) == 0 && kn_conv2d_winograd_eligible(&d) == 1)
        let count = Int(kn_conv2d_prepared_floats(&d))
        #expect(count > 4 * w.count)
        let prepared = Tensor(zeros: [count])
        kn_conv2d_prepare_weights(&d, w.floats, prepared.floats)
        func run(_ p: UnsafeMutablePointer<Float>?) -> [Float] {
            let y = Tensor(zeros: [3, 72, 20, 21])
            kn_conv2d_forward_prepared(&d, x.floats, w.floats, p, bias.floats, y.floats, nil)
            return y.scalars
        }
        let perCall = run(nil)
        #expect(run(prepared.floats) == perCall)
        let other = Tensor(zeros: [count])  // prepared for 64 → 64 channels: another layout
        var narrower = Conv2DOp(padding: .symmetric(1)).descriptor(x.shape, [64, 64, 3, 3])
        #expect(kn_conv2d_geometry(&narrower) == 0)
        kn_conv2d_prepare_weights(&narrower, w.floats, other.floats)
        #expect(run(other.floats) == perCall)
        for i in 64..<count { prepared.floats[i] = 0 }
        #expect(run(prepared.floats) != perCall)
        // A strided conv on a map past channel tiles' 256 pixels prepares nothing.
        var strided = Conv2DOp(stride: (2, 2), padding: .symmetric(1)).descriptor([3, 64, 40, 42], w.shape)
        #expect(kn_conv2d_geometry(&strided) == 0 && kn_conv2d_prepared_floats(&strided) == 0)
    }

    /// Small maps with prepared filters take channel tiles (vectors along the output channels):
    /// bit-equal to the direct path they replace (same k order and KC blocks), within float
    /// rounding of the naive reference, with the epilogue (residual + ReLU) on the same channels;
    /// batch 1 splits the panels across the threads, larger batches claim images.
    static let smallMaps: [Case] = [
        Case(n: 1, c: 64, h: 7, w: 7, o: 64, k: 3, stride: 1, padding: .symmetric(1)),  // layer4 at batch 1
        Case(n: 3, c: 40, h: 14, w: 13, o: 96, k: 3, stride: 2, padding: Padding(top: 0, left: 1, bottom: 1, right: 0), bias: false),
        Case(n: 1, c: 96, h: 9, w: 9, o: 32, k: 1, stride: 2, padding: .zero),  // downsample
        Case(n: 2, c: 300, h: 10, w: 11, o: 64, k: 1, stride: 1, padding: .zero),  // pointwise, K past KC
        Case(n: 1, c: 48, h: 16, w: 16, o: 32, k: 3, stride: 1, padding: .symmetric(1), bias: false),  // 256 pixels
        Case(n: 2, c: 5, h: 17, w: 19, o: 64, k: 5, stride: 3, padding: Padding(top: 1, left: 2, bottom: 0, right: 1)),
    ]

    @Test(arguments: smallMaps)
    func channelTilesEqualTheDirectPath(_ t: Case) throws {
        let x = randomTensor([t.n, t.c, t.h, t.w], seed: 4), w = randomTensor([t.o, t.c, t.k, t.k], seed: 5)
        let bias = t.bias ? randomTensor([t.o], seed: 6) : nil
        var d = Conv2DOp(stride: (t.stride, t.stride), padding: t.padding).descriptor(x.shape, w.shape)
        #expect(kn_conv2d_geometry(&d) == 0 && kn_conv2d_winograd_eligible(&d) == 0)
        let count = Int(kn_conv2d_prepared_floats(&d))
        #expect(count > w.count, "\(t)")
        let prepared = Tensor(zeros: [count])
        kn_conv2d_prepare_weights(&d, w.floats, prepared.floats)
        let shape: Shape = [t.n, t.o, Int(d.oh), Int(d.ow)]
        let residual = randomTensor(shape, seed: 7)
        func run(_ p: UnsafeMutablePointer<Float>?, activated: Bool) -> [Float] {
            let y = Tensor(zeros: shape)
            var ep = kn_conv_epilogue(stats: nil, residual: activated ? residual.floats : nil, activation: activated ? 1 : 0)
            kn_conv2d_forward_prepared(&d, x.floats, w.floats, p, bias?.floats, y.floats, &ep)
            return y.scalars
        }
        let direct = run(nil, activated: false), tiles = run(prepared.floats, activated: false)
        #expect(tiles == direct, "\(t)")
        #expect(run(prepared.floats, activated: true) == run(nil, activated: true), "\(t)")
        let reference = Tensor(zeros: shape)
        kn_conv2d_reference(&d, x.floats, w.floats, bias?.floats, reference.floats)
        #expect(relativeError(tiles, reference.scalars) < 5e-6, "\(t)")
        // The prepared panels are what it reads: zeroing them changes the output.
        for i in 16..<count { prepared.floats[i] = 0 }
        #expect(run(prepared.floats, activated: false) != direct, "\(t)")
    }

    /// With prepared filters Winograd also takes maps of 49 to 195 2×2 tiles (ResNet's layer3 at
    /// batch 1), which per-call transforms would not pay for: within Winograd's rounding of the
    /// reference, the transformed filters really read; without them the direct path runs.
    @Test func preparedWinogradTakesSmallerMaps() throws {
        let x = randomTensor([1, 64, 14, 14], seed: 8), w = randomTensor([64, 64, 3, 3], seed: 9)
        let bias = randomTensor([64], seed: 10)
        var d = Conv2DOp(padding: .symmetric(1)).descriptor(x.shape, w.shape)
        #expect(kn_conv2d_geometry(&d) == 0 && kn_conv2d_winograd_eligible(&d) == 0)
        let count = Int(kn_conv2d_prepared_floats(&d))
        #expect(count > 4 * w.count)
        let prepared = Tensor(zeros: [count])
        kn_conv2d_prepare_weights(&d, w.floats, prepared.floats)
        func run(_ p: UnsafeMutablePointer<Float>?) -> [Float] {
            let y = Tensor(zeros: [1, 64, 14, 14])
            kn_conv2d_forward_prepared(&d, x.floats, w.floats, p, bias.floats, y.floats, nil)
            return y.scalars
        }
        let reference = Tensor(zeros: [1, 64, 14, 14])
        kn_conv2d_reference(&d, x.floats, w.floats, bias.floats, reference.floats)
        let winograd = run(prepared.floats), direct = run(nil)
        #expect(relativeError(winograd, reference.scalars) < 2e-5)
        #expect(relativeError(direct, reference.scalars) < 5e-6)
        #expect(winograd != direct)  // another algorithm's rounding: the prepared path ran
        for i in 16..<count { prepared.floats[i] = 0 }
        #expect(run(prepared.floats) != winograd)
    }

    /// Channel tiles need whole panels of output channels and small maps; elsewhere nothing is
    /// prepared and the direct path runs.
    @Test func channelTilesOnlyWhereTheyApply() {
        var odd = Conv2DOp(padding: .symmetric(1)).descriptor([1, 16, 7, 7], [36, 16, 3, 3])  // 36: no whole panel
        #expect(kn_conv2d_geometry(&odd) == 0 && kn_conv2d_prepared_floats(&odd) == 0)
        var wide = Conv2DOp(padding: .symmetric(1)).descriptor([1, 16, 18, 18], [64, 16, 3, 3])  // 324 pixels
        #expect(kn_conv2d_geometry(&wide) == 0 && kn_conv2d_prepared_floats(&wide) == 0)
    }

    /// Batches of 1 take the serial path (threaded sgemm), larger ones the image-parallel path.
    @Test(arguments: cases)
    func matchesNaiveReference(_ t: Case) throws {
        let x = randomTensor([t.n, t.c, t.h, t.w], seed: 1)
        let w = randomTensor([t.o, t.c / t.groups, t.k, t.k], seed: 2)
        var inputs = [x, w]
        if t.bias { inputs.append(randomTensor([t.o], seed: 3)) }
        let op = Conv2DOp(stride: (t.stride, t.stride), padding: t.padding, groups: t.groups)
        let fast = try apply(op, inputs)

        var d = op.descriptor(x.shape, w.shape)
        #expect(kn_conv2d_geometry(&d) == 0)
        let reference = Tensor(zeros: fast.shape)
        kn_conv2d_reference(&d, x.floats, w.floats, t.bias ? inputs[2].floats : nil, reference.floats)
        // The GEMM sums each output over k = c·9 terms in order (2304 for 256 channels): float32
        // rounding of a chain that long reaches ~2e-6 against the double-accumulated reference.
        // Winograd F(4×4)'s transforms add their own (6–8e-6 on these random cases; the network-level
        // bound is Float64EvaluatorTests' 1e-5 on logits).
        let tolerance = kn_conv2d_winograd_eligible(&d) == 1 ? 2e-5 : 5e-6
        #expect(relativeError(fast.scalars, reference.scalars) < tolerance, "\(t)")
    }

    @Test func referenceMatchesHandComputedValue() {
        // 1 image, 1 channel 3x3 of 1…9, 2x2 kernel of ones, no padding: sums of 2x2 windows.
        let x = Tensor(shape: [1, 1, 3, 3], values: (1...9).map(Float.init))
        let w = Tensor(shape: [1, 1, 2, 2], values: [1, 1, 1, 1])
        var d = Conv2DOp().descriptor(x.shape, w.shape)
        #expect(kn_conv2d_geometry(&d) == 0)
        let y = Tensor(zeros: [1, 1, 2, 2])
        kn_conv2d_reference(&d, x.floats, w.floats, nil, y.floats)
        #expect(y.scalars == [12, 16, 24, 28])
    }

    @Test func channelMismatchNamesBothShapes() {
        let op = Conv2DOp()
        #expect(throws: ShapeRuleError.self) { try op.outputShape(for: [[1, 3, 8, 8], [4, 5, 3, 3]]) }
        do {
            _ = try op.outputShape(for: [[1, 3, 8, 8], [4, 5, 3, 3]])
        } catch let error as ShapeRuleError {
            #expect(error.detail.contains("[1, 3, 8, 8]") && error.detail.contains("[4, 5, 3, 3]"))
        } catch {}
    }

    @Test func kernelLargerThanInputIsAShapeError() {
        #expect(throws: ShapeRuleError.self) { try Conv2DOp().outputShape(for: [[1, 3, 2, 2], [4, 3, 3, 3]]) }
    }
}
