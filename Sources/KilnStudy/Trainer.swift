import Dispatch
import Foundation
import Kiln
import KilnData
import KilnModels

public struct EpochRecord: Codable, Sendable {
    public var epoch: Int
    public var learningRate: Double
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double
    public var validationAccuracy: Double
    /// Wall time of the epoch (training and validation).
    public var seconds: Double
    public var imagesPerSecond: Double
}

public struct RunResult: Codable, Sendable {
    public var config: RunConfig
    public var classes: [String]
    public var history: [EpochRecord]
    public var test: Evaluation
    public var trainImages: Int

    public var secondsPerEpoch: Double { history.isEmpty ? 0 : history.map(\.seconds).reduce(0, +) / Double(history.count) }
    public var bestValidationAccuracy: Double { history.map(\.validationAccuracy).max() ?? 0 }
    /// First epoch whose validation accuracy is within 2 points of the best.
    public var epochsToConverge: Int {
        (history.first { $0.validationAccuracy >= bestValidationAccuracy - 0.02 }?.epoch ?? 0)
    }
}

/// One training run: builds the model, loads pretrained weights, trains with checkpoints each
/// epoch (atomic safetensors, `--resume` continues from them), evaluates on the test split.
public final class Trainer {
    public let config: RunConfig
    public let cache: ImageCache
    public let split: DataSplit
    public let directory: URL
    public let progress: ProgressReporter

    public init(config: RunConfig, cache: ImageCache, split: DataSplit, directory: URL, progress: ProgressReporter) {
        (self.config, self.cache, self.split, self.directory, self.progress) = (config, cache, split, directory, progress)
    }

    var classes: [String] { cache.dataset.classes }
    var checkpointURL: URL { directory.appendingPathComponent("checkpoint.safetensors") }

    public func run(resume: Bool = false) throws -> RunResult {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try JSONEncoder.pretty.encode(config).write(to: directory.appendingPathComponent("config.json"), options: .atomic)
        // BN running statistics follow the new data at PyTorch's momentum 0.1 (Keras' 0.001 would
        // leave ImageNet statistics in place for most of a short fine-tuning run).
        let model = try Zoo.model(config.model, classes: classes.count, width: config.width, batchNormMomentum: 0.1)
        let shape: Shape = [config.batchSize, 3, config.inputSize, config.inputSize]
        let forward = try Graph.trace(model, input: shape)
        let store = ParameterStore(graph: forward, seed: config.seed)
        if let weights = config.weights, config.strategy != .scratch {
            let report = try store.load(WeightFile.read(URL(fileURLWithPath: weights)), for: forward, file: weights,
                                        strict: false, skipPrefixes: [config.classifier])
            progress.line("  \(config.label): loaded \(report.loaded.count) pretrained tensors (\(config.pretraining)); new classifier")
        }
        let step = try TrainStep(model: model, inputShape: shape, parameters: store, configuration: config.trainStepConfiguration)

        var history: [EpochRecord] = []
        var firstEpoch = 0
        if resume, FileManager.default.fileExists(atPath: checkpointURL.path) {
            let (tensors, metadata) = try Safetensors.read(checkpointURL)
            try store.load(tensors, for: step.graph, file: checkpointURL.path, optimizerState: true)
            firstEpoch = Int(metadata["epoch"] ?? "0") ?? 0
            step.restore(stepCount: Int64(metadata["step"] ?? "0") ?? 0)
            history = (try? JSONDecoder().decode([EpochRecord].self, from: Data(contentsOf: directory.appendingPathComponent("history.json")))) ?? []
            history = Array(history.prefix(firstEpoch))
            progress.line("  \(config.label): resuming after epoch \(firstEpoch)")
        }

        let labels = Dictionary(uniqueKeysWithValues: cache.dataset.samples.map { ($0.id, $0.label) })
        let trainIDs = split.trainingSubset(config.fraction, labels: labels)
        let train = DataLoader(cache: cache, ids: trainIDs, batchSize: config.batchSize, transforms: config.trainTransforms,
                               shuffle: true, seed: config.seed)
        let validation = DataLoader(cache: cache, ids: split.validation, batchSize: config.batchSize, transforms: config.evalTransforms, shuffle: false)
        let test = DataLoader(cache: cache, ids: split.test, batchSize: config.batchSize, transforms: config.evalTransforms, shuffle: false)

        for epoch in firstEpoch..<config.epochs {
            step.epoch = epoch
            let start = DispatchTime.now().uptimeNanoseconds
            var seen = 0, lossSum = 0.0, correct = 0, batchIndex = 0
            for batch in train.batches(epoch: epoch) {
                let result = try step.run(images: batch.images, labels: batch.labels)
                guard result.loss.isFinite else {
                    throw DatasetError("\(config.label): loss became \(result.loss) at epoch \(epoch + 1) (learning rate \(config.learningRate) too high?)")
                }
                let n = batch.labels.count
                lossSum += Double(result.loss) * Double(n)
                correct += (0..<n).filter { i in
                    let row = UnsafeBufferPointer(start: result.logits.floats + i * classes.count, count: classes.count)
                    return row.indices.max { row[$0] < row[$1] } == Int(batch.labels.int64s[i])
                }.count
                seen += n
                batchIndex += 1
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                progress.batch(config.label, epoch: epoch + 1, epochs: config.epochs, batch: batchIndex, batches: train.batchCount,
                               loss: lossSum / Double(seen), imagesPerSecond: Double(seen) / elapsed,
                               eta: elapsed / Double(seen) * Double(train.count * (config.epochs - epoch) - seen))
            }
            let trainSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let val = try evaluate(step, validation)
            let record = EpochRecord(epoch: epoch + 1, learningRate: Double(step.learningRate), trainLoss: lossSum / Double(max(seen, 1)),
                                     trainAccuracy: Double(correct) / Double(max(seen, 1)), validationLoss: val.loss,
                                     validationAccuracy: val.accuracy, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                                     imagesPerSecond: Double(seen) / trainSeconds)
            history.append(record)
            progress.line(String(format: "  %@ epoch %d/%d: train loss %.3f acc %.1f%% | val loss %.3f acc %.1f%% | %.1f s, %.0f img/s",
                                 config.label, epoch + 1, config.epochs, record.trainLoss, 100 * record.trainAccuracy,
                                 record.validationLoss, 100 * record.validationAccuracy, record.seconds, record.imagesPerSecond))
            try Safetensors.write(store.stateTensors(for: step.graph, includeOptimizer: true),
                                  metadata: ["epoch": String(epoch + 1), "step": String(step.stepCount), "model": config.model,
                                             "classes": classes.joined(separator: ","), "strategy": config.strategy.rawValue],
                                  to: checkpointURL)
            try JSONEncoder.pretty.encode(history).write(to: directory.appendingPathComponent("history.json"), options: .atomic)
        }
        let result = RunResult(config: config, classes: classes, history: history, test: try evaluate(step, test), trainImages: train.count)
        try JSONEncoder.pretty.encode(result).write(to: directory.appendingPathComponent("result.json"), options: .atomic)
        return result
    }

    func evaluate(_ step: TrainStep, _ loader: DataLoader) throws -> Evaluation {
        var evaluation = Evaluation(classes: classes)
        for batch in loader.batches(epoch: 0) {
            evaluation.add(logits: try step.evaluate(images: batch.images), labels: batch.labels)
        }
        return evaluation
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }
}
