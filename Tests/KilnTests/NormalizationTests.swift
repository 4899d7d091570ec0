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
