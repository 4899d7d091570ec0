import Foundation
import Testing
@testable import Kiln

struct ElementwiseTests {
    @Test func reluAndRelu6ClampAsDefined() throws {
        let x = Tensor(shape: [1, 6], values: [-3, -0.5, 0, 2.5, 6, 9])
        #expect(try apply(ReLUOp(), [x]).scalars == [0, 0, 0, 2.5, 6, 9])
        #expect(try apply(ReLU6Op(), [x]).scalars == [0, 0, 0, 2.5, 6, 6])
    }

    @Test func addIsElementwiseAndRejectsMismatchedShapes() throws {
        let a = randomTensor([2, 3, 4, 4], seed: 1), b = randomTensor([2, 3, 4, 4], seed: 2)
        let y = try apply(AddOp(), [a, b])
        #expect(y.scalars == zip(a.scalars, b.scalars).map { $0 + $1 })
        #expect(throws: ShapeRuleError.self) { try AddOp().outputShape(for: [[2, 3, 4, 4], [2, 3, 4, 5]]) }
    }

    @Test func flattenKeepsBatchAndOrder() throws {
        let x = randomTensor([2, 3, 2, 2], seed: 3)
        let y = try apply(FlattenOp(), [x])
        #expect(y.shape == [2, 12])
        #expect(y.scalars == x.scalars)
    }

    @Test func dropoutIsIdentityInInferenceAndInvertedInTraining() throws {
        let x = Tensor(shape: [1, 20000], values: Array(repeating: 1, count: 20000))
        #expect(try apply(DropoutOp(p: 0.3), [x]).scalars == x.scalars)
        let y = try apply(DropoutOp(p: 0.3), [x], mode: .training, seed: 42).scalars
        let dropped = Double(y.filter { $0 == 0 }.count) / Double(y.count)
        #expect(abs(dropped - 0.3) < 0.02)
        #expect(y.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        // Same seed, same mask; another seed, another mask.
        #expect(try apply(DropoutOp(p: 0.3), [x], mode: .training, seed: 42).scalars == y)
        #expect(try apply(DropoutOp(p: 0.3), [x], mode: .training, seed: 43).scalars != y)
    }
}

struct PoolingTests {
    func naivePool(_ x: Tensor, k: Int, s: Int, p: Int, max isMax: Bool, includePad: Bool) -> (Shape, [Double]) {
        let xs = x.shape
        let oh = (xs[2] + 2 * p - k) / s + 1, ow = (xs[3] + 2 * p - k) / s + 1
        let os: Shape = [xs[0], xs[1], oh, ow]
        var out = [Double](repeating: 0, count: os.count)
        for n in 0..<xs[0] {
            for c in 0..<xs[1] {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var best = -Double.infinity, sum = 0.0, inside = 0
                        for i in 0..<k {
                            for j in 0..<k {
                                let y = oy * s - p + i, xx = ox * s - p + j
                                guard y >= 0, y < xs[2], xx >= 0, xx < xs[3] else { continue }
                                let v = Double(x.floats[at(xs, n, c, y, xx)])
                                best = max(best, v); sum += v; inside += 1
                            }
                        }
                        let padded = (min(oy * s - p + k, xs[2] + p) - (oy * s - p)) * (min(ox * s - p + k, xs[3] + p) - (ox * s - p))
                        out[at(os, n, c, oy, ox)] = isMax ? best : sum / Double(includePad ? padded : inside)
                    }
                }
            }
        }
        return (os, out)
    }

    @Test(arguments: [(2, 2, 0), (3, 2, 1), (3, 2, 0), (3, 1, 1), (2, 1, 0)])
    func maxAndAveragePoolMatchNaive(_ config: (Int, Int, Int)) throws {
        let (k, s, p) = config
        let x = randomTensor([2, 3, 7, 8], seed: 5)
        let maxY = try apply(Pool2DOp(.max, kernel: (k, k), stride: (s, s), padding: (p, p)), [x])
        let (shape, maxRef) = naivePool(x, k: k, s: s, p: p, max: true, includePad: true)
        #expect(maxY.shape == shape)
        #expect(relativeError(maxY.scalars, maxRef) == 0)
        for include in [true, false] {
            let avgY = try apply(Pool2DOp(.average(countIncludePad: include), kernel: (k, k), stride: (s, s), padding: (p, p)), [x])
            #expect(relativeError(avgY.scalars, naivePool(x, k: k, s: s, p: p, max: false, includePad: include).1) < 1e-6)
        }
    }

    /// NaN wins a max-pool window (PyTorch's rule), in the inner windows' 3×3 stride-2 path too.
    @Test func maxPoolPropagatesNaN() throws {
        let x = randomTensor([1, 1, 9, 9], seed: 7)
        x.floats[4 * 9 + 4] = .nan  // in the window of output (2, 2) only
        let y = try apply(Pool2DOp(.max, kernel: (3, 3), stride: (2, 2), padding: (1, 1)), [x])
        let nan = (0..<y.count).filter { y.floats[$0].isNaN }
        #expect(nan == [2 * 5 + 2], "NaN outputs at \(nan)")
        x.floats[4 * 9 + 4] = 0
        x.floats[3 * 9 + 3] = .nan  // in the windows of outputs (1…2, 1…2)
        let z = try apply(Pool2DOp(.max, kernel: (3, 3), stride: (2, 2), padding: (1, 1)), [x])
        #expect((0..<z.count).filter { z.floats[$0].isNaN } == [6, 7, 11, 12])
    }

    /// Max-pool gradients go to each window's first maximum, NaN winning, on rows wider than the
    /// vectorised 3×3 stride-2 path's runs (ties from coarse values, NaNs planted).
    @Test(arguments: [(3, 2, 1), (3, 1, 1), (2, 2, 0)])
    func maxPoolGradientGoesToTheFirstMaximum(_ config: (Int, Int, Int)) throws {
        let (k, s, p) = config
        let x = randomTensor([2, 2, 11, 157], seed: 8, low: 0, high: 4)
        for i in 0..<x.count { x.floats[i] = x.floats[i].rounded(.down) }  // ties in most windows
        for i in stride(from: 5, to: x.count, by: 389) { x.floats[i] = .nan }
        let pool = Pool2DOp(.max, kernel: (k, k), stride: (s, s), padding: (p, p))
        let ys = try pool.outputShape(for: [x.shape])
        let dy = randomTensor(ys, seed: 9)
        let dx = try apply(Pool2DBackwardOp(forward: pool), [x, dy])
        var expected = [Double](repeating: 0, count: x.count)
        for n in 0..<2 {
            for c in 0..<2 {
                for oy in 0..<ys[2] {
                    for ox in 0..<ys[3] {
                        var best = -1
                        for i in 0..<k {
                            for j in 0..<k {
                                let y = oy * s - p + i, xx = ox * s - p + j
                                guard y >= 0, y < 11, xx >= 0, xx < 157 else { continue }
                                let v = x.floats[at(x.shape, n, c, y, xx)]
                                if best < 0 || v > x.floats[best] || v.isNaN { best = at(x.shape, n, c, y, xx) }
                            }
                        }
                        expected[best] += Double(dy.floats[at(ys, n, c, oy, ox)])
                    }
                }
            }
        }
        #expect(relativeError(dx.scalars, expected) < 1e-6)
    }

    @Test func globalAveragePoolIsThePlaneMean() throws {
        let x = randomTensor([2, 3, 5, 4], seed: 6)
        let y = try apply(GlobalAvgPoolOp(), [x])
        #expect(y.shape == [2, 3, 1, 1])
        for plane in 0..<6 {
            let mean = (0..<20).map { Double(x.floats[plane * 20 + $0]) }.reduce(0, +) / 20
            #expect(abs(Double(y.floats[plane]) - mean) < 1e-6)
        }
    }

    @Test func zeroPaddingIsAsymmetricWhenAsked() throws {
        let x = Tensor(shape: [1, 1, 2, 2], values: [1, 2, 3, 4])
        let y = try apply(ZeroPad2DOp(Padding(top: 0, left: 0, bottom: 1, right: 1)), [x])
        #expect(y.shape == [1, 1, 3, 3])
        #expect(y.scalars == [1, 2, 0, 3, 4, 0, 0, 0, 0])
    }

    @Test func windowLargerThanInputIsAShapeError() {
        #expect(throws: ShapeRuleError.self) { try Pool2DOp(.max, kernel: (5, 5), stride: (1, 1)).outputShape(for: [[1, 1, 3, 3]]) }
    }
}

struct DenseTests {
    @Test func linearMatchesNaive() throws {
        let x = randomTensor([3, 5], seed: 1), w = randomTensor([4, 5], seed: 2), b = randomTensor([4], seed: 3)
        let y = try apply(LinearOp(), [x, w, b])
        var expected: [Double] = []
        for n in 0..<3 {
            for o in 0..<4 {
                expected.append((0..<5).reduce(Double(b.floats[o])) { $0 + Double(x.floats[n * 5 + $1]) * Double(w.floats[o * 5 + $1]) })
            }
        }
        #expect(relativeError(y.scalars, expected) < 1e-6)
    }

    @Test func linearInFeaturesMismatchNamesShapes() {
        do {
            _ = try LinearOp().outputShape(for: [[2, 256], [21, 512], [21]])
            Issue.record("expected a shape error")
        } catch let error as ShapeRuleError {
            #expect(error.detail.contains("[2, 256]") && error.detail.contains("in_features=512"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func softmaxLogSoftmaxAndCrossEntropyAgree() throws {
        let logits = randomTensor([4, 7], seed: 9, low: -5, high: 5)
        let labels = Tensor(shape: [4], int64s: [0, 6, 3, 3])
        let p = try apply(SoftmaxOp(log: false), [logits]).scalars
        let logp = try apply(SoftmaxOp(log: true), [logits]).scalars
        for row in 0..<4 {
            let values = (0..<7).map { Double(logits.floats[row * 7 + $0]) }
            let lse = log(values.map { exp($0) }.reduce(0, +))
            for j in 0..<7 {
                #expect(abs(Double(p[row * 7 + j]) - exp(values[j] - lse)) < 1e-6)
                #expect(abs(Double(logp[row * 7 + j]) - (values[j] - lse)) < 1e-5)
            }
        }
        let loss = try apply(CrossEntropyOp(), [logits, labels]).scalars[0]
        let expected = [0, 6, 3, 3].enumerated().map { -Double(logp[$0.offset * 7 + $0.element]) }.reduce(0, +) / 4
        #expect(abs(Double(loss) - expected) < 1e-5)
    }

    @Test func crossEntropyRejectsOutOfRangeLabels() {
        let logits = randomTensor([2, 3], seed: 1)
        #expect(throws: KernelError.self) { try apply(CrossEntropyOp(), [logits, Tensor(shape: [2], int64s: [1, 3])]) }
    }
}
