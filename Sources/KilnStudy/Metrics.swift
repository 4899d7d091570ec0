import Foundation
import Kiln

/// Accumulates predictions of a classifier: accuracy, per-class accuracy, confusion matrix, loss.
public struct Evaluation: Codable, Sendable {
    public let classes: [String]
    /// confusion[true][predicted]
    public private(set) var confusion: [[Int]]
    public private(set) var lossSum = 0.0
    public private(set) var count = 0

    public init(classes: [String]) {
        self.classes = classes
        confusion = Array(repeating: Array(repeating: 0, count: classes.count), count: classes.count)
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

/// Top-k classes of one logit row, with softmax probabilities.
public func topK(_ logits: UnsafeBufferPointer<Float>, k: Int) -> [(index: Int, probability: Double)] {
    let top = Double(logits.max() ?? 0)
    let exps = logits.map { exp(Double($0) - top) }
    let total = exps.reduce(0, +)
    return exps.indices.sorted { exps[$0] > exps[$1] }.prefix(k).map { ($0, exps[$0] / total) }
}
