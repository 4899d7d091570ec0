import CKernels
import Testing
@testable import Kiln

struct BatchNormTests {
    let shape: Shape = [3, 4, 5, 6]

    func parameters() -> [Tensor] {
        [
            randomTensor([4], seed: 11, low: 0.5, high: 1.5), randomTensor([4], seed: 12),
            randomTensor([4], seed: 13), randomTensor([4], seed: 14, low: 0.5, high: 2),
            Tensor(zeros: [], dtype: .int64),
        ]
    }

    @Test func inferenceUsesRunningStatistics() throws {
        let x = randomTensor(shape, seed: 10)
        let p = parameters()
        let y = try apply(BatchNormOp(eps: 1e-3), [x] + p)
        var expected = [Double](repeating: 0, count: shape.count)
        for n in 0..<3 {
            for c in 0..<4 {
                for i in 0..<5 {
                    for j in 0..<6 {
                        let k = at(shape, n, c, i, j)
                        let norm = (Double(x.floats[k]) - Double(p[2].floats[c])) / (Double(p[3].floats[c]) + 1e-3).squareRoot()
                        expected[k] = norm * Double(p[0].floats[c]) + Double(p[1].floats[c])
                    }
                }
            }
        }
        #expect(relativeError(y.scalars, expected) < 1e-6)
        #expect(p[4].int64Scalars == [0])
    }

    @Test func trainingUsesBatchStatisticsAndUpdatesRunningOnes() throws {
        let x = randomTensor(shape, seed: 20, low: -2, high: 3)
        let p = parameters()
        let oldMean = p[2].scalars, oldVar = p[3].scalars
        let y = try apply(BatchNormOp(eps: 1e-5, momentum: 0.1), [x] + p, mode: .training)
        let count = Double(3 * 5 * 6)
        for c in 0..<4 {
            var values: [Double] = []
            for n in 0..<3 { for i in 0..<5 { for j in 0..<6 { values.append(Double(x.floats[at(shape, n, c, i, j)])) } } }
            let mean = values.reduce(0, +) / count
            let biased = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / count
            for n in 0..<3 {
                for i in 0..<5 {
                    for j in 0..<6 {
                        let k = at(shape, n, c, i, j)
                        let expected =
                            (Double(x.floats[k]) - mean) / (biased + 1e-5).squareRoot() * Double(p[0].floats[c]) + Double(p[1].floats[c])
                        #expect(abs(Double(y.floats[k]) - expected) < 1e-5)
                    }
                }
            }
            // PyTorch: running = 0.9 * running + 0.1 * batch, with the unbiased batch variance.
            #expect(abs(Double(p[2].floats[c]) - (0.9 * Double(oldMean[c]) + 0.1 * mean)) < 1e-6)
            #expect(abs(Double(p[3].floats[c]) - (0.9 * Double(oldVar[c]) + 0.1 * biased * count / (count - 1))) < 1e-6)
        }
        #expect(p[4].int64Scalars == [1])
    }

    @Test func channelMismatchIsAShapeError() {
        #expect(throws: ShapeRuleError.self) {
            try BatchNormOp().outputShape(for: [[1, 3, 4, 4], [4], [4], [4], [4], []])
        }
    }
}

/// The fused BN backward's activation mask taken from z·scale + shift (the saved scale and shift of
/// a step without residual) equals the one taken from the forward's y, bit for bit, with runs of z
/// straddling the kinks (y = 0, y = 6) float by float.
struct FusedBatchNormMaskTests {
    @Test(arguments: [Int32(KN_ACT_RELU), Int32(KN_ACT_RELU6)])
    func masksFromScaleAndShiftEqualMasksFromY(activation: Int32) {
        let (n, c, hw) = (3, 5, 37)
        var z = randomTensor([n * c * hw], seed: 21, low: -4, high: 4).scalars
        let gamma = randomTensor([c], seed: 22, low: 0.5, high: 2).scalars, dy = randomTensor([n * c * hw], seed: 24).scalars
        let scaleShift = randomTensor([c], seed: 25, low: 0.3, high: 3).scalars + randomTensor([c], seed: 26).scalars
        for ch in 0..<c {  // z = (k − shift)/scale for k = 0 and 6, and its neighbours up to 6 ulps either way
            for (j, kink) in [Float(0), 6].enumerated() {
                var value = (kink - scaleShift[c + ch]) / scaleShift[ch]
                for _ in 0..<6 { value = value.nextDown }
                for k in 0..<13 {
                    z[ch * hw + 13 * j + k] = value
                    value = value.nextUp
                }
            }
        }
        var y = [Float](repeating: 0, count: z.count)
        kn_batchnorm_apply_scale_shift(z, &y, scaleShift, activation, Int32(n), Int32(c), Int32(hw))  // the forward's apply
        var fromY = [Float](repeating: 0, count: 4 * c), fromZ = fromY
        kn_fused_bn_backward_reduce(z, y, nil, dy, activation, 1e-5, Int32(n), Int32(c), Int32(hw), &fromY)
        kn_fused_bn_backward_reduce(z, nil, scaleShift, dy, activation, 1e-5, Int32(n), Int32(c), Int32(hw), &fromZ)
        #expect(fromZ == fromY)
        var dzFromY = [Float](repeating: 0, count: z.count), dzFromZ = dzFromY
        kn_fused_bn_backward_input(z, y, nil, dy, activation, gamma, fromY, Double(n * hw), Int32(n), Int32(c), Int32(hw), &dzFromY)
        kn_fused_bn_backward_input(
            z, nil, scaleShift, dy, activation, gamma, fromY, Double(n * hw), Int32(n), Int32(c), Int32(hw), &dzFromZ)
        #expect(dzFromZ == dzFromY)
        // Both runs straddle their kink (so a mask off by a rounding would show).
        for ch in 0..<c {
            for j in 0..<(activation == Int32(KN_ACT_RELU6) ? 2 : 1) {
                let run = y[(ch * hw + 13 * j)..<(ch * hw + 13 * j + 13)], kink = Float(6 * j)
                #expect(run.contains { $0 == kink } && run.contains { $0 != kink }, "channel \(ch), kink \(kink): \(Array(run))")
            }
        }
    }
}
