import Foundation
import Kiln
import KilnData
import KilnModels

/// The data of a study: the dataset, its saved split and the decoded image cache.
public struct StudyData {
    public let dataset: ImageDataset
    public let split: DataSplit
    public let cache: ImageCache
    public let inputSize: Int
    /// Where the split is kept: reused from there, written there by the first run that starts.
    public let splitURL: URL

    /// Real data from an ImageFolder root, or the embedded synthetic set when `root` is nil. The
    /// split is stratified 70/10/20 by `seed`; split.json in `directory` is reused when it is
    /// there and names only samples of this data (a trainer writes it once a run has started).
    public static func prepare(
        root: URL?, syntheticPerClass: Int = 40, inputSize: Int, seed: UInt64, skipBad: Bool,
        directory: URL, progress: ProgressReporter
    ) throws -> StudyData {
        let baseSize = Int((Double(inputSize) * 8 / 7).rounded())
        let dataset = try root.map(ImageFolder.scan) ?? SyntheticLandUse.dataset(perClass: syntheticPerClass, size: baseSize, seed: seed)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let splitURL = directory.appendingPathComponent("split.json")
        let split: DataSplit
        if FileManager.default.fileExists(atPath: splitURL.path) {
            split = try DataSplit.read(splitURL)
            let known = Set(dataset.samples.map(\.id)), listed = split.train + split.validation + split.test
            if let foreign = listed.first(where: { !known.contains($0) }) {
                let count = listed.filter { !known.contains($0) }.count
                throw DatasetError(
                    "\(splitURL.path) was made for other data: \(count) of its \(listed.count) samples (e.g. '\(foreign)') are not in \(dataset.name). Use another --out, or delete split.json to split this data anew"
                )
            }
        } else {
            split = DataSplit.stratified(dataset, seed: seed)
        }
        progress.line(
            "data: \(dataset.name), \(dataset.samples.count) images, \(dataset.classes.count) classes\(dataset.isSynthetic ? " (synthetic)" : ""); split \(split.train.count)/\(split.validation.count)/\(split.test.count) (seed \(split.seed))"
        )
        let cache = try ImageCache(dataset, ids: split.train + split.validation + split.test, baseSize: baseSize, skipBad: skipBad)
        for failure in cache.failures { progress.line("skipped unreadable image: \(failure)") }
        guard !cache.images.isEmpty else {
            throw DatasetError(
                "\(dataset.name): none of its \(dataset.samples.count) images could be decoded\(cache.failures.first.map { " (first: \($0))" } ?? "")"
            )
        }
        return StudyData(dataset: dataset, split: split, cache: cache, inputSize: inputSize, splitURL: splitURL)
    }
}

/// The notebook's experiments: `compare` (strategies side by side) and `sweep` (learning rates ×
/// training-set fractions).
public final class Study {
    public struct Options: Sendable {
        public var epochs = 10
        public var batchSize = 32
        public var seed: UInt64 = 0
        public var mobilenetWeights: String?
        public var resnetWeights: String?
        /// Learning rate per strategy (SGD, momentum 0.9, cosine schedule).
        public var learningRates: [Strategy: Double] = [.scratch: 0.05, .finetune: 0.01, .frozen: 0.05]
        public var pretrainEpochs = 8
        public var pretrainPerClass = 60
        public var only: [String]? = nil
        /// ONNX models (files) compared beside the zoo, each with `onnxStrategies`; their own
        /// weights are the pretrained ones and their head is replaced for the dataset's classes.
        public var onnxModels: [String] = []
        public var onnxStrategies: [Strategy] = [.finetune, .frozen]
        /// Frozen rows train their head on cached backbone features (`FeatureCache`), drawing
        /// from `cacheVariants` dihedral variants of the centre crop.
        public var featureCache = true
        public var cacheVariants = 2
        /// Beside each frozen row, one whose classifier is fitted in closed form (`--head ridge`).
        public var ridgeRows = true
        public init() {}
    }

    public let data: StudyData
    public let directory: URL
    public let progress: ProgressReporter
    /// The ranks running the study together (rank 0 writes the reports).
    public var job: DistributedJob = .single
    public let options: Options
    /// One feature cache per backbone, shared by the runs of a comparison or a sweep.
    private var featureCaches: [String: FeatureCache] = [:]

    func featureCache(for config: RunConfig) -> FeatureCache {
        let key = "\(config.model)|\(config.width.map { "\($0)" } ?? "")"
        if let cache = featureCaches[key] { return cache }
        let cache = FeatureCache()
        featureCaches[key] = cache
        return cache
    }

    public init(data: StudyData, directory: URL, options: Options, progress: ProgressReporter) {
        (self.data, self.directory, self.options, self.progress) = (data, directory, options, progress)
    }

    /// Where pretrained weights for a backbone come from: a file the user gave, or a synthetic
    /// pretraining run on a disjoint texture task (labelled so in the report; never ImageNet).
    func pretrained(_ model: String, width: Double?) throws -> (file: String, label: String) {
        if model == "mobilenet-v2", let w = options.mobilenetWeights {
            return (w, "ImageNet (TF.js MobileNetV2-0.35, \(URL(fileURLWithPath: w).lastPathComponent))")
        }
        if model == "resnet18", let w = options.resnetWeights {
            // "imagenet": torchvision's published file, through torch hub's cache (downloaded once).
            let file = w == "imagenet" ? try Self.fetchImageNetResNet18(progress: progress) : w
            return (file, "ImageNet (torchvision, \(URL(fileURLWithPath: file).lastPathComponent))")
        }
        let dir = directory.appendingPathComponent("pretrain-\(model)")
        let checkpoint = dir.appendingPathComponent("checkpoint.safetensors")
        let label = "synthetic pretraining (\(SyntheticLandUse.sourceClasses.count)-class texture task, disjoint from land use)"
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("result.json").path) { return (checkpoint.path, label) }
        progress.line("pretraining \(model) on the synthetic texture task (no pretrained weights given)")
        let source = SyntheticLandUse.dataset(
            perClass: options.pretrainPerClass, size: data.cache.images.values.first!.width, seed: options.seed ^ 0x5EED, source: true)
        let split = DataSplit.stratified(source, fractions: [0.9, 0.1, 0.0], seed: options.seed)
        let cache = try ImageCache(source, ids: split.train + split.validation, baseSize: nil, skipBad: false)
        var config = RunConfig(model: model, width: width, strategy: .scratch)
        (config.epochs, config.batchSize, config.learningRate, config.seed, config.inputSize) =
            (options.pretrainEpochs, options.batchSize, options.learningRates[.scratch]!, options.seed, data.inputSize)
        _ = try Trainer(config: config, cache: cache, split: split, directory: dir, progress: progress, job: job).run(force: true)
        return (checkpoint.path, label)
    }

    /// torchvision's ImageNet ResNet-18 from torch hub's cache, downloaded (with a progress bar)
    /// when absent: what `--resnet-weights imagenet` means.
    public static func fetchImageNetResNet18(progress: ProgressReporter) throws -> String {
        let (weights, hub) = (ResNet18Weights.imagenet1kV1.published, WeightsHub.environment)
        if !FileManager.default.fileExists(atPath: hub.cachedFile(weights).path) {
            progress.line("downloading \(weights) from \(hub.downloadURL(weights).absoluteString)")
        }
        return try hub.fetch(weights, progress: WeightsHub.terminalProgress(weights)).path
    }

    /// The study's rows: basic CNN from scratch, ResNet-18 from scratch / fine-tune / frozen,
    /// MobileNetV2-0.35 fine-tune / frozen. Same split, same epochs and batch size for all.
    public func strategies() throws -> [RunConfig] {
        var rows: [RunConfig] = [RunConfig(model: "basic-cnn", strategy: .scratch), RunConfig(model: "resnet18", strategy: .scratch)]
        for (model, width) in [("resnet18", nil), ("mobilenet-v2", 0.35)] as [(String, Double?)] {
            for strategy in [Strategy.finetune, .frozen] { rows.append(RunConfig(model: model, width: width, strategy: strategy)) }
        }
        for file in options.onnxModels {
            for strategy in options.onnxStrategies { rows.append(RunConfig(model: file, strategy: strategy)) }
        }
        if options.ridgeRows {
            rows += rows.filter { $0.strategy == .frozen }.map { row in
                var ridge = row
                ridge.head = "ridge"
                return ridge
            }
        }
        if let only = options.only {
            rows = rows.filter {
                only.contains($0.label) || only.contains($0.model) || only.contains($0.strategy.rawValue)
                    || only.contains(String($0.label.prefix { $0 != " " }))
            }
        }
        for i in rows.indices {
            rows[i].epochs = options.epochs
            rows[i].batchSize = options.batchSize
            rows[i].seed = options.seed
            rows[i].inputSize = data.inputSize
            rows[i].learningRate = options.learningRates[rows[i].strategy]!
            (rows[i].featureCache, rows[i].cacheVariants) = (options.featureCache, options.cacheVariants)
            if Zoo.isONNX(rows[i].model) {
                rows[i].pretraining = "the weights in \(URL(fileURLWithPath: rows[i].model).lastPathComponent)"
            } else if rows[i].strategy != .scratch {
                let (file, label) = try pretrained(rows[i].model, width: rows[i].width)
                rows[i].weights = file
                rows[i].pretraining = label
            }
        }
        return rows
    }

    public func compare() throws -> [RunResult] {
        let rows = try strategies()
        var results: [RunResult] = []
        for config in rows {
            progress.line("== \(config.label) (\(config.pretraining)), lr \(config.learningRate), \(config.epochs) epochs")
            let runDir = runFolder(config)
            // A finished run with the same configuration is reused, so a study can be extended or re-reported.
            if let previous = try? JSONDecoder().decode(
                RunResult.self, from: Data(contentsOf: runDir.appendingPathComponent("result.json"))),
                (try? JSONEncoder.pretty.encode(previous.config)) == (try? JSONEncoder.pretty.encode(config))
            {
                progress.line(
                    String(format: "   reusing the finished run in %@: test accuracy %.1f%%", runDir.path, 100 * previous.test.accuracy))
                results.append(previous)
                continue
            }
            let result = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: runDir, progress: progress,
                splitFile: data.splitURL, featureCache: featureCache(for: config), job: job
            ).run(force: true)
            progress.line(String(format: "   test accuracy %.1f%%", 100 * result.test.accuracy))
            results.append(result)
        }
        guard job.isRoot else { return results }
        var gallery: [GalleryEntry] = []
        if let best = results.max(by: { $0.test.accuracy < $1.test.accuracy }) {
            do { gallery = try activationGallery(runFolder(best.config)) } catch {
                progress.line("no class-activation gallery for \(best.config.label): \(error)")
            }
        }
        try Report(data: data, directory: directory).writeComparison(results, gallery: gallery)
        return results
    }

    func runFolder(_ config: RunConfig) -> URL {
        directory.appendingPathComponent("runs").appendingPathComponent(config.label.replacingOccurrences(of: " · ", with: "-"))
    }

    /// Class-activation overlays of the best run on test images: per class the first correctly
    /// classified image and the first mistake among its first few, written to cam/.
    func activationGallery(_ runFolder: URL, triesPerClass: Int = 6) throws -> [GalleryEntry] {
        let maps = try ClassActivationMap(runFolder: runFolder)
        let folder = directory.appendingPathComponent("cam")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let labels = Dictionary(uniqueKeysWithValues: data.dataset.samples.map { ($0.id, $0.label) })
        var entries: [GalleryEntry] = []
        for (label, name) in data.dataset.classes.enumerated() {
            var found: Set<Bool> = []
            for id in data.split.test.filter({ labels[$0] == label }).prefix(triesPerClass) {
                guard let image = data.cache.images[id] else { continue }
                let (input, crop) = maps.prepare(image)
                let explanation = try maps.explain(input)
                let correct = explanation.predicted == label
                guard found.insert(correct).inserted else { continue }
                let file = "cam/\(id.replacingOccurrences(of: "/", with: "-")).png"
                try ImageDecoder.write(
                    ClassActivationMap.overlay(crop, explanation), to: directory.appendingPathComponent(file), format: .png)
                entries.append(
                    GalleryEntry(
                        file: file, truth: name, predicted: maps.classes[explanation.predicted],
                        probability: explanation.probability))
                if found.count == 2 { break }
            }
        }
        return entries
    }

    /// Learning rates × training-set fractions for one model and strategy.
    public func sweep(model: String, width: Double?, strategy: Strategy, learningRates: [Double], fractions: [Double]) throws -> [RunResult]
    {
        var results: [RunResult] = []
        var base = RunConfig(model: model, width: width, strategy: strategy)
        (base.epochs, base.batchSize, base.seed, base.inputSize) = (options.epochs, options.batchSize, options.seed, data.inputSize)
        (base.featureCache, base.cacheVariants) = (options.featureCache, options.cacheVariants)
        if strategy != .scratch { (base.weights, base.pretraining) = try pretrained(model, width: width) }
        for fraction in fractions {
            for lr in learningRates {
                var config = base
                config.learningRate = lr
                config.fraction = fraction
                progress.line("== \(config.label) lr \(lr), \(Int(fraction * 100))% of the training set")
                let dir = directory.appendingPathComponent("sweep").appendingPathComponent("lr\(lr)-f\(fraction)")
                results.append(
                    try Trainer(
                        config: config, cache: data.cache, split: data.split, directory: dir, progress: progress,
                        splitFile: data.splitURL, featureCache: featureCache(for: config), job: job
                    ).run(force: true))
            }
        }
        guard job.isRoot else { return results }
        try Report(data: data, directory: directory).writeSweep(results, learningRates: learningRates, fractions: fractions)
        return results
    }
}
