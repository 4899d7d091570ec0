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
    /// nil when the validation split is empty (reports show "—", never 0%).
    public var validationLoss: Double?
    public var validationAccuracy: Double?
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
    /// Set when the run trained its head on cached backbone features.
    public var featureCache: FeatureCacheReport?

    public var secondsPerEpoch: Double { history.isEmpty ? 0 : history.map(\.seconds).reduce(0, +) / Double(history.count) }
    public var bestValidationAccuracy: Double? { history.compactMap(\.validationAccuracy).max() }
    /// First epoch whose validation accuracy is within 2 points of the best (nil without validation).
    public var epochsToConverge: Int? {
        bestValidationAccuracy.flatMap { best in history.first { ($0.validationAccuracy ?? -1) >= best - 0.02 }?.epoch }
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

    /// Where the split is saved once the run has started (its first checkpoint), if not already there.
    public let splitFile: URL?
    /// Backbone features shared with other runs (a sweep's); a run makes its own when nil.
    public let featureCache: FeatureCache?
    /// The ranks training together; rank 0 alone writes the run's files.
    public let job: DistributedJob

    public init(
        config: RunConfig, cache: ImageCache, split: DataSplit, directory: URL, progress: ProgressReporter, splitFile: URL? = nil,
        featureCache: FeatureCache? = nil, job: DistributedJob = .single
    ) {
        (self.config, self.cache, self.split, self.directory, self.progress) = (config, cache, split, directory, progress)
        (self.splitFile, self.featureCache, self.job) = (splitFile, featureCache, job)
    }

    /// Each rank's share of the global batch.
    var rankBatch: Int { config.batchSize / job.ranks }

    var classes: [String] { cache.dataset.classes }
    public var checkpointURL: URL { directory.appendingPathComponent("checkpoint.safetensors") }
    var resultURL: URL { directory.appendingPathComponent("result.json") }

    /// Trains (or, with `resume`, continues — also a finished run given more epochs) the run in
    /// `directory`. A folder holding a run without `resume`, and `resume` without a checkpoint,
    /// are errors unless `force` (which starts over).
    public func run(resume: Bool = false, force: Bool = false) throws -> RunResult {
        let fm = FileManager.default
        let hasCheckpoint = fm.fileExists(atPath: checkpointURL.path), finished = fm.fileExists(atPath: resultURL.path)
        if !force {
            if finished && !resume {
                throw TrainingError(
                    "\(directory.path) already holds a finished run (result.json); use --force to train it again from scratch, --resume with more --epochs to extend it, or another --out"
                )
            }
            if resume && !hasCheckpoint {
                throw TrainingError(
                    "--resume: \(directory.path) has no checkpoint.safetensors to continue from; drop --resume to start a new run (or --force)"
                )
            }
            if !resume && hasCheckpoint {
                throw TrainingError(
                    "\(directory.path) holds an unfinished run (checkpoint.safetensors); --resume continues it, --force starts over")
            }
        }
        let resuming = resume && hasCheckpoint
        guard config.epochs > 0, config.batchSize > 0 else {
            throw TrainingError("\(config.label): epochs and batch size must be positive")
        }
        guard config.batchSize % job.ranks == 0 else {
            throw TrainingError(
                "\(config.label): --batch \(config.batchSize) is the global batch and must split evenly over the \(job.ranks) ranks")
        }
        if job.isRoot {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            // Temporary files of writes a killed run never finished (Data.writeAtomically).
            for name in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] where name.hasPrefix(".") && name.contains(".partial-")
            {
                try? fm.removeItem(at: directory.appendingPathComponent(name))
            }
            if !resuming {
                for stale in ["checkpoint.safetensors", "history.json", "result.json"] {
                    try? fm.removeItem(at: directory.appendingPathComponent(stale))
                }
            }
        }
        try job.communicator.barrier()  // every rank has seen the folder as it was before rank 0 tidied it
        // BN running statistics follow the new data at PyTorch's momentum 0.1 (Keras' 0.001 would
        // leave ImageNet statistics in place for most of a short fine-tuning run).
        let model = try Zoo.model(config.model, classes: classes.count, width: config.width, batchNormMomentum: 0.1)
        let shape: Shape = [rankBatch, 3, config.inputSize, config.inputSize]
        let forward = try Graph.trace(model, input: shape)
        // An ONNX model brings its own weights (its classifier resized to the dataset's classes).
        let store =
            if config.weights == nil, config.strategy != .scratch, let pretrained = model as? ONNXModel {
                try pretrained.pretrainedParameters(for: forward, seed: config.seed)
            } else {
                ParameterStore(graph: forward, seed: config.seed)
            }
        if let weights = config.weights, config.strategy != .scratch {
            let report: LoadReport
            do {
                report = try store.load(
                    WeightFile.read(URL(fileURLWithPath: weights)), for: forward, file: weights,
                    strict: false, skipPrefixes: [config.classifier])
            } catch let error as LoadError {
                throw Zoo.explain(error, model: config.model)
            }
            progress.line("  \(config.label): loaded \(report.loaded.count) pretrained tensors (\(config.pretraining)); new classifier")
        }
        let labels = Dictionary(uniqueKeysWithValues: cache.dataset.samples.map { ($0.id, $0.label) })
        let trainIDs = split.trainingSubset(config.fraction, labels: labels)
        var stepConfiguration = config.trainStepConfiguration
        let feeder = try featureFeeder(model, shape: shape, store: store, configuration: stepConfiguration, trainIDs: trainIDs)
        stepConfiguration.startAt = feeder?.boundary.values
        stepConfiguration.dataParallel = job.dataParallel
        stepConfiguration.frozenWeightsConstant = true  // weights and a resumed checkpoint load before the first step
        let step = try TrainStep(model: model, inputShape: shape, parameters: store, configuration: stepConfiguration)

        var history: [EpochRecord] = []
        var firstEpoch = 0
        if resuming {
            let (tensors, metadata) = try Safetensors.read(checkpointURL)
            // The whole model's state, then the optimizer's (a head-only step holds just the head's).
            try store.load(tensors, for: forward, file: checkpointURL.path)
            let stepState = Set(step.graph.persistentValues.map(\.name))
            try store.load(tensors.filter { stepState.contains($0.0) }, for: step.graph, file: checkpointURL.path, optimizerState: true)
            firstEpoch = Int(metadata["epoch"] ?? "0") ?? 0
            guard firstEpoch < config.epochs else {
                throw TrainingError(
                    "--resume: \(checkpointURL.path) has already trained \(firstEpoch) of \(config.epochs) epochs; raise --epochs to continue"
                )
            }
            step.restore(stepCount: Int64(metadata["step"] ?? "0") ?? 0)
            history =
                (try? JSONDecoder().decode([EpochRecord].self, from: Data(contentsOf: directory.appendingPathComponent("history.json"))))
                ?? []
            history = Array(history.prefix(firstEpoch))
            progress.line("  \(config.label): resuming after epoch \(firstEpoch)")
        }

        let train = DataLoader(
            cache: cache, ids: trainIDs, batchSize: rankBatch, transforms: config.trainTransforms,
            shuffle: true, seed: config.seed, shard: job.isDistributed ? DataLoader.Shard(rank: job.rank, ranks: job.ranks) : nil)
        guard train.count > 0 else {
            throw TrainingError(
                "\(config.label): the training split has no readable images (\(trainIDs.count) listed, \(cache.failures.count) unreadable in the data)"
            )
        }
        // Evaluation: each rank scores every ranks-th image, the confusion matrices are summed.
        let validation = DataLoader(
            cache: cache, ids: rankShare(split.validation), batchSize: config.batchSize, transforms: config.evalTransforms, shuffle: false)
        let test = DataLoader(
            cache: cache, ids: rankShare(split.test), batchSize: config.batchSize, transforms: config.evalTransforms, shuffle: false)

        if config.head == "ridge" {
            guard let feeder else {
                throw TrainingError(
                    "\(config.label): --head ridge fits the classifier on cached frozen features, and this run has none (see above)")
            }
            // Every rank fits the same head on all the features (deterministic; seconds).
            history = [try fitRidge(step, feeder: feeder, store: store, train: train.ids, validation: split.validation)]
            try recordStart()
            try writeCheckpoint(store, forward: forward, step: step, epoch: config.epochs, history: history)
        }
        for epoch in firstEpoch..<config.epochs where config.head != "ridge" {
            step.epoch = epoch
            let start = DispatchTime.now().uptimeNanoseconds
            var seen = 0, lossSum = 0.0, correct = 0, batchIndex = 0
            let nextBatch = batchSource(train, feeder: feeder, epoch: epoch)
            while let batch = try nextBatch() {
                let result = try step.run(features: batch.feeds, labels: batch.labels)
                guard result.loss.isFinite else {
                    let cause = step.diagnoseNonFinite(features: batch.feeds, labels: batch.labels)
                    throw nonFinite("the loss became \(result.loss) at epoch \(epoch + 1), batch \(batchIndex + 1)", cause, lastGood: epoch)
                }
                let n = batch.labels.count
                lossSum += Double(result.loss) * Double(n)
                correct +=
                    (0..<n).filter { i in
                        let row = UnsafeBufferPointer(start: result.logits.floats + i * classes.count, count: classes.count)
                        return row.indices.max { row[$0] < row[$1] } == Int(batch.labels.int64s[i])
                    }.count
                seen += n
                batchIndex += 1
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                progress.batch(
                    config.label, epoch: epoch + 1, epochs: config.epochs, batch: batchIndex, batches: train.batchCount,
                    loss: lossSum / Double(seen), imagesPerSecond: Double(seen) / elapsed,
                    eta: elapsed / Double(seen) * Double(train.count * (config.epochs - epoch) - seen))
            }
            let totals = try job.sum([lossSum, Double(correct), Double(seen)])  // over the ranks
            (lossSum, correct, seen) = (totals[0], Int(totals[1]), Int(totals[2]))
            let trainSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            // Nothing non-finite is written: the weights and the validation metrics are checked first.
            if let bad = store.firstNonFinite(in: step.graph) { throw nonFinite("after epoch \(epoch + 1)", bad, lastGood: epoch) }
            let val = try evaluate(step, validation, feeder: feeder)
            guard val.loss.isFinite else {
                throw nonFinite("the validation loss became \(val.loss) after epoch \(epoch + 1)", nil, lastGood: epoch)
            }
            let hasValidation = val.count > 0
            let record = EpochRecord(
                epoch: epoch + 1, learningRate: Double(step.learningRate), trainLoss: lossSum / Double(max(seen, 1)),
                trainAccuracy: Double(correct) / Double(max(seen, 1)), validationLoss: hasValidation ? val.loss : nil,
                validationAccuracy: hasValidation ? val.accuracy : nil,
                seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                imagesPerSecond: Double(seen) / trainSeconds)
            history.append(record)
            let validationText = hasValidation ? String(format: "val loss %.3f acc %.1f%%", val.loss, 100 * val.accuracy) : "val —"
            progress.line(
                String(
                    format: "  %@ epoch %d/%d: train loss %.3f acc %.1f%% | %@ | %.1f s, %.0f img/s",
                    config.label, epoch + 1, config.epochs, record.trainLoss, 100 * record.trainAccuracy,
                    validationText, record.seconds, record.imagesPerSecond))
            if epoch == firstEpoch { try recordStart() }
            try writeCheckpoint(store, forward: forward, step: step, epoch: epoch + 1, history: history)
        }
        var result = RunResult(
            config: config, classes: classes, history: history, test: try evaluate(step, test, feeder: feeder), trainImages: train.ids.count
        )
        if let feeder {
            // Seconds per backbone pass, averaged over everything the (possibly shared) cache computed.
            let perEntry = feeder.cache.computeSeconds / Double(max(feeder.cache.computed, 1))
            result.featureCache = FeatureCacheReport(
                boundary: feeder.boundary.values, variants: feeder.variants, computed: feeder.computed, reused: feeder.reused,
                megabytes: Double(feeder.cache.bytes) / 1_048_576, computeSeconds: feeder.computeSeconds,
                secondsSaved: perEntry * Double(feeder.reused))
            progress.line(
                String(
                    format: "  %@: feature cache — %d entries computed (%.1f s), %d reused (≈ %.1f s saved), %.1f MiB",
                    config.label, feeder.computed, feeder.computeSeconds, feeder.reused, perEntry * Double(feeder.reused),
                    result.featureCache!.megabytes))
        }
        guard result.test.loss.isFinite else { throw nonFinite("the test loss became \(result.test.loss)", nil, lastGood: config.epochs) }
        if job.isRoot { try JSONEncoder.pretty.encode(result).writeAtomically(to: resultURL) }
        try job.communicator.barrier()  // the next run on any rank sees this one's files
        return result
    }

    /// The whole model's state (a head-only step's graph lacks the backbone), then the
    /// optimizer's; atomic, with the history beside it.
    func writeCheckpoint(_ store: ParameterStore, forward: Graph, step: TrainStep, epoch: Int, history: [EpochRecord]) throws {
        guard job.isRoot else { return }  // every rank holds the same state
        let modelState = store.stateTensors(for: forward)
        let written = Set(modelState.map(\.0))
        try Safetensors.write(
            modelState + store.stateTensors(for: step.graph, includeOptimizer: true).filter { !written.contains($0.0) },
            metadata: [
                "epoch": String(epoch), "step": String(step.stepCount), "model": config.model,
                "classes": classes.joined(separator: ","), "strategy": config.strategy.rawValue,
            ],
            to: checkpointURL)
        try JSONEncoder.pretty.encode(history).writeAtomically(to: directory.appendingPathComponent("history.json"))
    }

    /// The classifier in closed form (`RidgeHead`) on the cached features of every training image
    /// in every variant, λ chosen by validation accuracy; one history record.
    func fitRidge(_ step: TrainStep, feeder: FeatureFeeder, store: ParameterStore, train: [String], validation: [String]) throws
        -> EpochRecord
    {
        let start = DispatchTime.now().uptimeNanoseconds
        guard feeder.boundary.values.count == 1, let weight = store["\(config.classifier).weight"], weight.shape.rank == 2,
            weight.shape[1] == feeder.boundary.floatsPerSample, store["\(config.classifier).bias"] != nil
        else {
            throw TrainingError(
                "\(config.label): --head ridge needs the classifier '\(config.classifier)' to be one Linear layer reading the frozen features \(feeder.boundary.values)"
            )
        }
        var features: [Float] = [], labels: [Int] = []
        for variant in 0..<feeder.variants {
            for begin in stride(from: 0, to: train.count, by: config.batchSize) {
                let ids = Array(train[begin..<min(train.count, begin + config.batchSize)])
                let batch = try feeder.batch(ids, variants: [Int](repeating: variant, count: ids.count))
                let x = batch.feeds[feeder.boundary.values[0]]!
                features += UnsafeBufferPointer(start: x.floats, count: x.count)
                labels += batch.labels.int64Scalars.map(Int.init)
            }
        }
        let normal = try RidgeHead.Normal(features, labels: labels, classes: classes.count)
        var best: (head: RidgeHead, accuracy: Double)?
        for relative in RidgeHead.relativeLambdas {
            let head = try normal.solve(relative: relative)
            weight.floats.update(from: head.weight, count: head.weight.count)
            store["\(config.classifier).bias"]!.floats.update(from: head.bias, count: head.bias.count)
            let accuracy = validation.isEmpty ? 0 : try evaluateCached(step, feeder, validation).accuracy
            if best == nil || accuracy > best!.accuracy { best = (head, accuracy) }
        }
        let chosen = best!.head
        weight.floats.update(from: chosen.weight, count: chosen.weight.count)
        store["\(config.classifier).bias"]!.floats.update(from: chosen.bias, count: chosen.bias.count)
        let fitted = try evaluateCached(step, feeder, train)
        let val = validation.isEmpty ? nil : try evaluateCached(step, feeder, validation)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        progress.line(
            String(
                format: "  %@: ridge head on %d feature rows, λ = %g × mean eigenvalue: train acc %.1f%% | val acc %@ | %.1f s",
                config.label, labels.count, chosen.relativeLambda, 100 * fitted.accuracy,
                val.map { String(format: "%.1f%%", 100 * $0.accuracy) } ?? "—", seconds))
        return EpochRecord(
            epoch: 1, learningRate: chosen.relativeLambda, trainLoss: fitted.loss, trainAccuracy: fitted.accuracy,
            validationLoss: val?.loss, validationAccuracy: val?.accuracy, seconds: seconds,
            imagesPerSecond: Double(labels.count) / seconds)
    }

    func evaluateCached(_ step: TrainStep, _ feeder: FeatureFeeder, _ ids: [String]) throws -> Evaluation {
        var evaluation = Evaluation(classes: classes)
        for begin in stride(from: 0, to: ids.count, by: config.batchSize) {
            let batch = try feeder.evaluationBatch(Array(ids[begin..<min(ids.count, begin + config.batchSize)]))
            evaluation.add(logits: try step.evaluate(features: batch.feeds), labels: batch.labels)
        }
        return evaluation
    }

    /// config.json (and the split, when the caller keeps one) are written once the first epoch
    /// has trained, so a run that fails before never leaves files that steer the next one.
    func recordStart() throws {
        guard job.isRoot else { return }
        try JSONEncoder.pretty.encode(config).writeAtomically(to: directory.appendingPathComponent("config.json"))
        if let splitFile, !FileManager.default.fileExists(atPath: splitFile.path) { try split.write(to: splitFile) }
    }

    func nonFinite(_ what: String, _ cause: ExecutionError?, lastGood epoch: Int) -> TrainingError {
        let checkpoint = epoch > 0 ? "the checkpoint of epoch \(epoch) is kept" : "no checkpoint was written"
        return TrainingError(
            "\(config.label): \(what)\(cause.map { ": \($0)" } ?? ""). The learning rate (\(config.learningRate)) is probably too high; training stopped and \(checkpoint)."
        )
    }

    /// This rank's share of the loader scored, merged with the other ranks'.
    func evaluate(_ step: TrainStep, _ loader: DataLoader, feeder: FeatureFeeder?) throws -> Evaluation {
        var evaluation = Evaluation(classes: classes)
        if let feeder {
            evaluation = try evaluateCached(step, feeder, loader.ids)
        } else {
            for batch in loader.batches(epoch: 0) {
                evaluation.add(logits: try step.evaluate(images: batch.images), labels: batch.labels)
            }
        }
        return try evaluation.merged(over: job)
    }

    /// Every ranks-th id, from this rank's position.
    func rankShare(_ ids: [String]) -> [String] {
        stride(from: job.rank, to: ids.count, by: job.ranks).map { ids[$0] }
    }

    /// The epoch's training batches: images from the loader, or cached features of the images
    /// in the loader's order.
    func batchSource(_ loader: DataLoader, feeder: FeatureFeeder?, epoch: Int) -> () throws -> (feeds: [String: Tensor], labels: Tensor)? {
        guard let feeder else {
            let batches = loader.batches(epoch: epoch)
            return { batches.next().map { (["input": $0.images], $0.labels) } }
        }
        let order = loader.order(epoch: epoch)
        var start = 0
        return {
            guard start < order.count else { return nil }
            defer { start += self.rankBatch }
            return try feeder.trainingBatch(Array(order[start..<min(order.count, start + self.rankBatch)]), epoch: epoch)
        }
    }

    /// The feeder of a frozen run whose backbone is a per-sample deterministic function, or nil
    /// (saying why when the run asked for a cache and cannot have one).
    func featureFeeder(_ model: any Layer, shape: Shape, store: ParameterStore, configuration: TrainStep.Configuration, trainIDs: [String])
        throws -> FeatureFeeder?
    {
        guard config.usesFeatureCache else { return nil }
        let boundary = try Compiler.frozenBoundary(model, input: shape, configuration)
        guard boundary.isCacheable else {
            progress.line(
                "  \(config.label): no feature cache: "
                    + (boundary.obstacle.map { "'\($0)' is not a per-image deterministic function in training" }
                        ?? "nothing is frozen before the head"))
            return nil
        }
        let cache = featureCache ?? FeatureCache()
        let entries = trainIDs.count * config.variantCount + split.validation.count + split.test.count
        let needed = entries * boundary.floatsPerSample * 4
        guard needed <= cache.limitBytes else {
            progress.line(
                "  \(config.label): no feature cache: \(entries) entries of \(boundary.floatsPerSample) floats need \(needed >> 20) MiB, over its \(cache.limitBytes >> 20) MiB limit"
            )
            return nil
        }
        let signature = FeatureFeeder.signature(config, boundary: boundary, parameters: store, variants: config.variantCount)
        if !cache.adopt(signature), cache.count == 0, featureCache != nil {
            progress.line("  \(config.label): feature cache (re)started for this backbone")
        }
        return FeatureFeeder(
            boundary: boundary, cache: cache, images: self.cache, model: model, parameters: store, config: config,
            variants: config.variantCount)
    }
}

/// A training run that cannot start or go on; names the run and what to do.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }
}
