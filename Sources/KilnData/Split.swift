import Foundation
import Kiln

/// A stratified, seeded train/validation/test split by sample id, saved beside a run so it can be
/// reproduced (and reused by `evaluate`).
public struct DataSplit: Codable, Sendable {
    public var seed: UInt64
    public var fractions: [Double]
    public var train: [String]
    public var validation: [String]
    public var test: [String]

    /// Per class: shuffle with the seed, then cut at the fractions (default 70/10/20).
    public static func stratified(_ dataset: ImageDataset, fractions: [Double] = [0.7, 0.1, 0.2], seed: UInt64) -> DataSplit {
        var rng = SplitMix(seed: seed)
        var split = DataSplit(seed: seed, fractions: fractions, train: [], validation: [], test: [])
        for label in dataset.classes.indices {
            var ids = dataset.samples.filter { $0.label == label }.map(\.id)
            ids.shuffle(using: &rng)
            let nTrain = Int((Double(ids.count) * fractions[0]).rounded())
            let nVal = Int((Double(ids.count) * fractions[1]).rounded())
            split.train += ids.prefix(nTrain)
            split.validation += ids.dropFirst(nTrain).prefix(nVal)
            split.test += ids.dropFirst(nTrain + nVal)
        }
        return split
    }

    /// The first `fraction` of each class's training ids (stratified, nested: a smaller fraction
    /// is a subset of a larger one).
    public func trainingSubset(_ fraction: Double, labels: [String: Int]) -> [String] {
        guard fraction < 1 else { return train }
        var byClass: [Int: [String]] = [:]
        for id in train { byClass[labels[id] ?? -1, default: []].append(id) }
        return byClass.keys.sorted().flatMap { label -> [String] in
            let ids = byClass[label]!
            return Array(ids.prefix(max(1, Int((Double(ids.count) * fraction).rounded()))))
        }
    }

    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).writeAtomically(to: url)
    }

    public static func read(_ url: URL) throws -> DataSplit {
        do { return try JSONDecoder().decode(DataSplit.self, from: Data(contentsOf: url)) } catch {
            throw DatasetError("\(url.path): not a split file: \(error)")
        }
    }
}
