import Foundation
import Kiln

/// Accumulates predictions of a classifier: accuracy, per-class accuracy, confusion matrix, loss.
public struct Evaluation: Codable, Sendable {
    public let classes: [String]
    /// confusion[true][predicted]
    public private(set) var confusion: [[Int]]
    public private(set) var lossSum = 0.0
    public private(set) var count = 0

    enum CodingKeys: String, CodingKey { case classes, confusion, lossSum, count, accuracy, kappa, macroF1, perClass }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        classes = try c.decode([String].self, forKey: .classes)
        confusion = try c.decode([[Int]].self, forKey: .confusion)
        lossSum = try c.decode(Double.self, forKey: .lossSum)
        count = try c.decode(Int.self, forKey: .count)
    }

    /// The counts, and the metrics derived from them (results.json, evaluation.json).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(confusion, forKey: .confusion)
        try c.encode(lossSum, forKey: .lossSum)
        try c.encode(count, forKey: .count)
        if count > 0 { try c.encode(accuracy, forKey: .accuracy) }
        try c.encodeIfPresent(kappa, forKey: .kappa)
        try c.encodeIfPresent(macroF1, forKey: .macroF1)
        try c.encode(perClass, forKey: .perClass)
    }

    public init(classes: [String]) {
        self.classes = classes
        confusion = Array(repeating: Array(repeating: 0, count: classes.count), count: classes.count)
    }

    init(classes: [String], confusion: [[Int]], lossSum: Double, count: Int) {
        (self.classes, self.confusion, self.lossSum, self.count) = (classes, confusion, lossSum, count)
    }

    /// Adds a batch of logits [N, K] against labels [N].
    public mutating func add(logits: Tensor, labels: Tensor) {
        let n = logits.shape[0], k = logits.shape[1]
        for i in 0..<n {
            let row = UnsafeBufferPointer(start: logits.floats + i * k, count: k)
            let label = Int(labels.int64s[i])
            let predicted = row.indices.max { row[$0] < row[$1] }!
            confusion[label][predicted] += 1
            let top = Double(row[predicted])
            let logSum = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
            lossSum += logSum - Double(row[label])
        }
        count += n
    }

    public var accuracy: Double {
        count == 0 ? 0 : Double(confusion.indices.reduce(0) { $0 + confusion[$1][$1] }) / Double(count)
    }
    public var loss: Double { count == 0 ? 0 : lossSum / Double(count) }
    public var perClassAccuracy: [Double] {
        confusion.indices.map { c in
            let total = confusion[c].reduce(0, +)
            return total == 0 ? 0 : Double(confusion[c][c]) / Double(total)
        }
    }
}

/// The remote-sensing metrics of a confusion matrix: per-class precision, recall and F1,
/// macro-F1 and Cohen's kappa (as scikit-learn's `precision_recall_fscore_support`, `f1_score(average:
/// "macro")` and `cohen_kappa_score` compute them).
extension Evaluation {
    public struct ClassMetrics: Codable, Sendable, Equatable {
        public var precision: Double
        public var recall: Double
        public var f1: Double
        /// Test images of the class.
        public var support: Int
    }

    /// Per class; a ratio with a zero denominator is 0 (scikit-learn's zero_division=0).
    public var perClass: [ClassMetrics] {
        confusion.indices.map { c in
            let tp = Double(confusion[c][c])
            let predicted = Double(confusion.indices.reduce(0) { $0 + confusion[$1][c] }), actual = confusion[c].reduce(0, +)
            let precision = predicted == 0 ? 0 : tp / predicted, recall = actual == 0 ? 0 : tp / Double(actual)
            let f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
            return ClassMetrics(precision: precision, recall: recall, f1: f1, support: actual)
        }
    }

    /// Mean F1 over the classes that occur among the labels or the predictions; nil without images.
    public var macroF1: Double? {
        let present = confusion.indices.filter { c in confusion[c].reduce(0, +) > 0 || confusion.indices.contains { confusion[$0][c] > 0 } }
        guard !present.isEmpty else { return nil }
        let metrics = perClass
        return present.map { metrics[$0].f1 }.reduce(0, +) / Double(present.count)
    }

    /// Cohen's kappa: agreement beyond what the marginals give by chance, (p_o − p_e) / (1 − p_e);
    /// nil without images or when chance agreement is already total.
    public var kappa: Double? {
        guard count > 0 else { return nil }
        let n = Double(count)
        let observed = Double(confusion.indices.reduce(0) { $0 + confusion[$1][$1] }) / n
        let chance =
            confusion.indices.reduce(0.0) { sum, c in
                sum + Double(confusion[c].reduce(0, +)) * Double(confusion.indices.reduce(0) { $0 + confusion[$1][c] })
            } / (n * n)
        return chance >= 1 ? nil : (observed - chance) / (1 - chance)
    }
}

/// Top-k classes of one logit row, with softmax probabilities.
public func topK(_ logits: UnsafeBufferPointer<Float>, k: Int) -> [(index: Int, probability: Double)] {
    let top = Double(logits.max() ?? 0)
    let exps = logits.map { exp(Double($0) - top) }
    let total = exps.reduce(0, +)
    return exps.indices.sorted { exps[$0] > exps[$1] }.prefix(k).map { ($0, exps[$0] / total) }
}
