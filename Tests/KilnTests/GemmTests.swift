import CKernels
import Testing
@testable import Kiln

/// Kiln's order-fixed GEMM: every element of C is summed over k by the same multiply-adds in the
/// same order wherever it falls in the tile grid — in a full tile or in a narrow tail tile (at
/// most one vector of columns: half the work) — so a column's bits do not depend on how many
/// columns sit beside it. Runs on every instruction-set path in `make test`.
struct GemmTests {
    /// n: 1 and 5 columns and one vector (16 with AVX-512) take the narrow tile, 17 and 40 the full
    /// one; m past MR leaves partial rows; k = 300 spans two KC blocks; beta 1 accumulates onto C.
    @Test(arguments: [1, 5, 8, 16, 17, 40], [0, 1] as [Float])
    func narrowColumnsEqualTheSameColumnsOfAWideProduct(_ n: Int, _ beta: Float) {
        let m = 13, k = 300, wide = n + 40
        let a = randomTensor([m, k], seed: 11), bWide = randomTensor([k, wide], seed: 12)
        let start = randomTensor([m, wide], seed: 13)
        let b = Tensor(zeros: [k, n])
        for row in 0..<k { for j in 0..<n { b.floats[row * n + j] = bWide.floats[row * wide + j] } }
        let narrow = Tensor(zeros: [m, n]), full = start.clone()
        for i in 0..<m { for j in 0..<n { narrow.floats[i * n + j] = start.floats[i * wide + j] } }
        kn_sgemm(0, 0, Int32(m), Int32(n), Int32(k), 1, a.floats, Int32(k), b.floats, Int32(n), beta, narrow.floats, Int32(n))
        kn_sgemm(0, 0, Int32(m), Int32(wide), Int32(k), 1, a.floats, Int32(k), bWide.floats, Int32(wide), beta, full.floats, Int32(wide))
        var reference = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = Double(beta) * Double(start.floats[i * wide + j])
                for p in 0..<k { sum += Double(a.floats[i * k + p]) * Double(bWide.floats[p * wide + j]) }
                reference[i * n + j] = sum
                #expect(narrow.floats[i * n + j] == full.floats[i * wide + j], "n \(n), beta \(beta): C[\(i), \(j)]")
            }
        }
        #expect(relativeError(narrow.scalars, reference) < 1e-5, "n \(n), beta \(beta)")
    }
}
