import COpenBLAS
import Foundation

/// A linear classifier fitted in closed form on fixed features (the frozen backbone's cached
/// boundary): ridge-regularised least squares onto one-hot targets, W = (XcᵀXc + λI)⁻¹ XcᵀYc
/// with X and Y centred, so the bias is unregularised — LDA's direction up to the λ-shrinkage
/// of the within-class covariance. One Gram matrix (BLAS dsyrk), one Cholesky solve per λ
/// (LAPACKE dposv), in double precision: seconds for the whole fit.
struct RidgeHead {
    /// [classes, features] and [classes]: a Linear layer's weight and bias.
    var weight: [Float]
    var bias: [Float]
    /// The regularisation used, relative to the mean eigenvalue of XcᵀXc (trace / features).
    var relativeLambda: Double

    /// The centred Gram matrix and class sums of one training set, from which fits for any λ
    /// follow by one solve each.
    struct Normal {
        let features: Int, classes: Int
        let mean: [Double]
        let prior: [Double]
        let gram: [Double]  // upper triangle of XcᵀXc, row-major [features, features]
        let rhs: [Double]  // XcᵀYc, row-major [features, classes]

        init(_ x: [Float], labels: [Int], classes: Int) throws {
            let n = labels.count
            guard n > 0, x.count % n == 0 else { throw StudyError("ridge head: \(x.count) feature values for \(n) images") }
            let d = x.count / n
            (features, self.classes) = (d, classes)
            var mean = [Double](repeating: 0, count: d)
            for i in 0..<n { for j in 0..<d { mean[j] += Double(x[i * d + j]) } }
            for j in 0..<d { mean[j] /= Double(n) }
            var centred = [Double](repeating: 0, count: n * d)
            for i in 0..<n { for j in 0..<d { centred[i * d + j] = Double(x[i * d + j]) - mean[j] } }
            var gram = [Double](repeating: 0, count: d * d)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(d), Int32(n), 1, centred, Int32(d), 0, &gram, Int32(d))
            // Yc = onehot − prior and Σ Xc = 0, so XcᵀYc's column c is the sum of class c's rows.
            var rhs = [Double](repeating: 0, count: d * classes)
            var counts = [Double](repeating: 0, count: classes)
            for i in 0..<n {
                let c = labels[i]
                counts[c] += 1
                for j in 0..<d { rhs[j * classes + c] += centred[i * d + j] }
            }
            (self.mean, prior, self.gram, self.rhs) = (mean, counts.map { $0 / Double(n) }, gram, rhs)
        }

        /// The fit for λ = `relative` × trace(XcᵀXc) / features.
        func solve(relative: Double) throws -> RidgeHead {
            let (d, k) = (features, classes)
            let trace = (0..<d).reduce(0.0) { $0 + gram[$1 * d + $1] }
            let lambda = relative * max(trace / Double(d), 1e-12)
            var a = gram
            for j in 0..<d { a[j * d + j] += lambda }
            var b = rhs
            let info = LAPACKE_dposv(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(d), Int32(k), &a, Int32(d), &b, Int32(k))
            guard info == 0 else {
                throw StudyError("ridge head: the regularised Gram matrix is not positive definite (LAPACK info \(info))")
            }
            var weight = [Float](repeating: 0, count: k * d), bias = [Float](repeating: 0, count: k)
            for c in 0..<k {
                var dot = 0.0
                for j in 0..<d {
                    weight[c * d + j] = Float(b[j * k + c])
                    dot += mean[j] * b[j * k + c]
                }
                bias[c] = Float(prior[c] - dot)
            }
            return RidgeHead(weight: weight, bias: bias, relativeLambda: relative)
        }
    }

    /// Candidate λs, relative to the mean eigenvalue.
    static let relativeLambdas: [Double] = [1e-4, 1e-3, 1e-2, 1e-1, 1]
}
