import ArgumentParser
import Foundation
import Kiln
import KilnData
import KilnModels
import KilnStudy

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train one model with one strategy; checkpoints every epoch (atomic), --resume continues.")

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @Option(help: "Model: \(Zoo.names.joined(separator: ", ")), or an .onnx file (its weights are the pretrained ones).")
    var model = "basic-cnn"
    @Option(help: "Width multiplier (e.g. 0.35 for MobileNetV2-0.35).") var width: Double?
    @Option(help: "scratch, finetune or frozen.") var strategy: Strategy = .scratch
    @Option(
        help: "Pretrained weights (.pth, .safetensors, TF.js model.json) for finetune/frozen; 'imagenet' downloads torchvision's ResNet-18."
    ) var weights: String?
    @Option(help: "Learning rate.") var lr = 0.01
    @Option(help: "Classifier fit for --strategy frozen: sgd, or ridge (closed form on the cached features, seconds).") var head = "sgd"
    @Option(help: "sgd, adam or adamw.") var optimizer = "sgd"
    @Option(help: "constant, step or cosine.") var schedule = "cosine"
    @Option(help: "Fraction of the training split to use (stratified).") var fraction = 1.0
    @Option(help: "Output folder.") var out = "runs/train"
    @Flag(inversion: .prefixedNo, help: "Random crops, flips and quarter turns while training (off: the centre crop, deterministic).")
    var augment = true
    @Flag(help: "Continue from the checkpoint in --out.") var resume = false
    @Flag(help: "Train even though --out holds a run (finished or not): start over, or with --resume and no checkpoint, start anew.")
    var force = false

    func validate() throws {
        guard ["sgd", "adam", "adamw"].contains(optimizer) else { throw ValidationError("unknown optimizer '\(optimizer)'") }
        guard ["constant", "step", "cosine"].contains(schedule) else { throw ValidationError("unknown schedule '\(schedule)'") }
        guard fraction > 0 && fraction <= 1 else { throw ValidationError("--fraction must be in (0, 1]") }
        guard ["sgd", "ridge"].contains(head) else { throw ValidationError("--head must be sgd or ridge, got '\(head)'") }
        if head == "ridge" && (strategy != .frozen || !training.featureCache) {
            throw ValidationError(
                "--head ridge fits the classifier on cached frozen features: it needs --strategy frozen and the feature cache")
        }
        if strategy != .scratch && weights == nil && !Zoo.isONNX(model) {
            throw ValidationError("--strategy \(strategy.rawValue) needs --weights")
        }
        if weights == "imagenet" && model != "resnet18" {
            throw ValidationError("--weights imagenet downloads torchvision's ResNet-18; for \(model), pass a weights file")
        }
    }

    func run() throws {
        try reporting {
            let (data, progress, directory, job) = try dataOptions.prepareStudy(out, synchronizeBatchNorm: training.syncBn)
            var config = RunConfig(model: model, width: width, strategy: strategy)
            (config.epochs, config.batchSize, config.learningRate, config.optimizer) = (training.epochs, training.batch, lr, optimizer)
            (config.schedule, config.fraction, config.seed, config.inputSize) = (schedule, fraction, dataOptions.seed, data.inputSize)
            (config.featureCache, config.cacheVariants) = (training.featureCache, training.cacheVariants)
            if head == "ridge" { config.head = "ridge" }
            config.augment = augment
            if Zoo.isONNX(model), weights == nil { config.pretraining = URL(fileURLWithPath: model).lastPathComponent }
            if let weights {
                let file = weights == "imagenet" ? try Study.fetchImageNetResNet18(progress: progress) : weights
                (config.weights, config.pretraining) = (file, URL(fileURLWithPath: file).lastPathComponent)
            }
            let again = CommandLine.arguments.filter { $0 != "--resume" && $0 != "--force" }.joined(separator: " ") + " --resume"
            onInterrupt(say: "interrupted: the checkpoint of the last finished epoch is in \(out); continue with\n  \(again)")
            let result = try Trainer(
                config: config, cache: data.cache, split: data.split, directory: directory, progress: progress,
                splitFile: data.splitURL, job: job
            ).run(resume: resume, force: force)
            guard job.isRoot else { return }
            if result.test.count == 0 {
                print("test accuracy — (the test split is empty) — \(out)/result.json")
            } else {
                print(
                    String(format: "test accuracy %.2f%% (loss %.3f) — %@/result.json", 100 * result.test.accuracy, result.test.loss, out))
            }
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Accuracy, Cohen's kappa, macro-F1, per-class precision/recall/F1 and the confusion matrix of a trained run on its test split.")

    @OptionGroup var dataOptions: DataOptions
    @Option(name: .customLong("run"), help: "A run folder written by `landuse train` (config.json, split.json, checkpoint.safetensors).")
    var runFolder: String

    func run() throws {
        try reporting {
            let directory = URL(fileURLWithPath: runFolder)
            let config = try RunConfig.read(runFolder: directory)
            let progress = ProgressReporter()
            let data = try dataOptions.prepare(directory, progress: progress)
            let model = try Zoo.model(config.model, classes: data.dataset.classes.count, width: config.width)
            let graph = try Compiler.inference(model, input: [config.batchSize, 3, config.inputSize, config.inputSize])
            let store = ParameterStore()
            let checkpoint = directory.appendingPathComponent("checkpoint.safetensors")
            try store.load(Safetensors.read(checkpoint).tensors, for: graph, file: checkpoint.path)
            let step = try TrainStep(
                model: model, inputShape: [config.batchSize, 3, config.inputSize, config.inputSize], parameters: store,
                configuration: config.trainStepConfiguration)
            var evaluation = Evaluation(classes: data.dataset.classes)
            let loader = DataLoader(
                cache: data.cache, ids: data.split.test, batchSize: config.batchSize, transforms: config.evalTransforms, shuffle: false)
            for batch in loader.batches(epoch: 0) { evaluation.add(logits: try step.evaluate(images: batch.images), labels: batch.labels) }
            guard evaluation.count > 0 else { throw StudyError("\(runFolder): the test split is empty; nothing to evaluate") }
            print(
                String(format: "test accuracy %.2f%%, loss %.3f on %d images", 100 * evaluation.accuracy, evaluation.loss, evaluation.count)
            )
            let optional = { (v: Double?) in v.map { String(format: "%.3f", $0) } ?? "—" }
            print("Cohen's kappa \(optional(evaluation.kappa)), macro-F1 \(optional(evaluation.macroF1))")
            let width = max(12, evaluation.classes.map(\.count).max() ?? 0)
            print("  " + "class".padding(toLength: width, withPad: " ", startingAt: 0) + "  precision  recall     F1  images")
            for (c, m) in zip(evaluation.classes, evaluation.perClass) {
                print(
                    "  " + c.padding(toLength: width, withPad: " ", startingAt: 0)
                        + String(format: "  %8.1f%%  %5.1f%%  %5.3f  %6d", 100 * m.precision, 100 * m.recall, m.f1, m.support))
            }
            print("confusion matrix (rows: true, columns: predicted in the same order):")
            for (i, row) in evaluation.confusion.enumerated() {
                print(
                    "  " + evaluation.classes[i].padding(toLength: width, withPad: " ", startingAt: 0) + " "
                        + row.map { String(format: "%3d", $0) }.joined(separator: " "))
            }
            try JSONEncoder().encode(evaluation).writeAtomically(to: directory.appendingPathComponent("evaluation.json"))
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top-k classes for image files, with a trained run.")

    @Option(name: .customLong("run"), help: "A run folder written by `landuse train`.") var runFolder: String
    @Option(help: "How many classes to list per image.") var topK = 3
    @Argument(help: "Image files (JPEG, PNG, TIFF).") var images: [String]

    func run() throws {
        try reporting {
            let trained = try TrainedRun(folder: runFolder)
            let (config, classes) = (trained.config, trained.classes)
            let graph = try Compiler.inference(trained.model, input: [1, 3, config.inputSize, config.inputSize])
            let store = try trained.parameters(for: graph)
            let executor = try Executor(graph: graph, parameters: store, constantWeights: true)
            for path in images {
                var rng = SplitMix(seed: 0)
                let decoded = FloatImage(try ImageDecoder.decode(URL(fileURLWithPath: path)))
                let image = ([.resize(config.baseSize)] + config.evalTransforms).reduce(decoded) { $1.apply($0, rng: &rng) }
                let input = Tensor(zeros: [1, 3, config.inputSize, config.inputSize])
                image.writeCHW(to: input.floats)
                let logits = try executor.run(["input": input])["logits"]!
                if let summary = logits.nonFiniteSummary { throw StudyError("\(path): the model's logits are non-finite (\(summary))") }
                let top = KilnStudy.topK(UnsafeBufferPointer(start: logits.floats, count: classes.count), k: topK)
                print(
                    path + ": "
                        + top.map { "\(classes[$0.index]) \(String(format: "%.1f%%", 100 * $0.probability))" }.joined(separator: ", "))
            }
        }
    }
}

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Where a trained run's network looks: a Grad-CAM overlay PNG of the predicted class for each image.")

    @Option(name: .customLong("run"), help: "A run folder written by `landuse train`.") var runFolder: String
    @Option(help: "Folder for the overlays (default: beside each image, as <name>-cam.png).") var out: String?
    @Argument(help: "Image files (JPEG, PNG, TIFF).") var images: [String]

    func run() throws {
        try reporting {
            let maps = try ClassActivationMap(runFolder: URL(fileURLWithPath: runFolder))
            for path in images {
                let url = URL(fileURLWithPath: path)
                let (input, crop) = maps.prepare(try ImageDecoder.decode(url))
                let explanation = try maps.explain(input)
                let name = url.deletingPathExtension().lastPathComponent + "-cam.png"
                let target =
                    out.map { URL(fileURLWithPath: $0).appendingPathComponent(name) }
                    ?? url.deletingLastPathComponent().appendingPathComponent(name)
                if let out { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
                try ImageDecoder.write(ClassActivationMap.overlay(crop, explanation), to: target, format: .png)
                print(
                    "\(path): \(maps.classes[explanation.predicted]) \(String(format: "%.1f%%", 100 * explanation.probability)) — \(target.path)"
                )
            }
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "The study: basic CNN from scratch, ResNet-18 from scratch / fine-tune all / frozen, MobileNetV2-0.35 fine-tune all / frozen; writes report.md, SVG plots and results.json.",
        discussion: "Backbones without given pretrained weights are first pretrained on a disjoint synthetic texture task, and labelled so."
    )

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @Option(help: "ImageNet MobileNetV2-0.35 weights (TF.js model.json).") var mobilenetWeights: String?
    @Option(
        help:
            "ImageNet ResNet-18 weights: a torchvision .pth, or 'imagenet' for torchvision's published file (downloaded once into torch hub's cache)."
    ) var resnetWeights: String?
    @Option(help: "Learning rate for from-scratch rows.") var lrScratch = 0.05
    @Option(help: "Learning rate for fine-tune-all rows.") var lrFinetune = 0.01
    @Option(help: "Learning rate for frozen-backbone rows.") var lrFrozen = 0.05
    @Option(help: "Epochs of synthetic pretraining (when no weights are given).") var pretrainEpochs = 8
    @Option(help: "Only these rows (comma-separated labels, models or strategies).") var only: String?
    @Option(
        name: .customLong("model"),
        help: "An ONNX model (.onnx; repeatable) to compare beside the zoo: its weights are the pretrained ones, its head is replaced."
    ) var onnxModels: [String] = []
    @Option(
        name: .customLong("strategy"), parsing: .upToNextOption,
        help: "Strategies of the ONNX models' rows: finetune and/or frozen.") var onnxStrategies: [Strategy] = [.finetune, .frozen]
    @Flag(
        inversion: .prefixedNo,
        help: "Beside each frozen row, one whose classifier is fitted in closed form (ridge, on the cached features).")
    var ridgeRows = true
    @Option(help: "Output folder.") var out = "runs/compare"

    func validate() throws {
        for file in onnxModels where !Zoo.isONNX(file) {
            throw ValidationError("--model \(file): compare adds ONNX files (.onnx); the zoo's models are rows already")
        }
        guard !onnxStrategies.contains(.scratch) else {
            throw ValidationError("--strategy scratch: an ONNX model's rows start from its weights (finetune or frozen)")
        }
    }

    func run() throws {
        try reporting {
            // Downloads come first: an offline machine fails now, not after the data or the first rows.
            let resnet = try resnetWeights.map { $0 == "imagenet" ? try Study.fetchImageNetResNet18(progress: ProgressReporter()) : $0 }
            let (data, progress, directory, job) = try dataOptions.prepareStudy(out, synchronizeBatchNorm: training.syncBn)
            var options = training.studyOptions(seed: dataOptions.seed)
            (options.mobilenetWeights, options.resnetWeights, options.pretrainEpochs) = (mobilenetWeights, resnet, pretrainEpochs)
            options.learningRates = [.scratch: lrScratch, .finetune: lrFinetune, .frozen: lrFrozen]
            options.only = only?.split(separator: ",").map(String.init)
            (options.onnxModels, options.onnxStrategies) = (onnxModels, onnxStrategies)
            options.ridgeRows = ridgeRows && training.featureCache
            let study = Study(data: data, directory: directory, options: options, progress: progress)
            study.job = job
            let results = try study.compare()
            progress.line("\nreport: \(out)/report.md")
            for r in results { progress.line(String(format: "  %-32@ test accuracy %.1f%%", r.config.label, 100 * r.test.accuracy)) }
        }
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Learning rates × training-set fractions for one model and strategy; writes sweep.md and a heatmap.")

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @Option(help: "Model.") var model = "resnet18"
    @Option(help: "Width multiplier.") var width: Double?
    @Option(help: "scratch, finetune or frozen.") var strategy: Strategy = .finetune
    @Option(help: "Pretrained weights (otherwise synthetic pretraining); 'imagenet' for ResNet-18 downloads torchvision's.") var weights:
        String?
    @Option(help: "Comma-separated learning rates.") var lrs = "0.1,0.01,0.001"
    @Option(help: "Comma-separated training-set fractions.") var fractions = "0.25,0.5,1"
    @Option(help: "Output folder.") var out = "runs/sweep"

    func run() throws {
        try reporting {
            let (data, progress, directory, job) = try dataOptions.prepareStudy(out, synchronizeBatchNorm: training.syncBn)
            var options = training.studyOptions(seed: dataOptions.seed)
            let file = try weights.map {
                $0 == "imagenet" && model == "resnet18" ? try Study.fetchImageNetResNet18(progress: progress) : $0
            }
            if model == "mobilenet-v2" { options.mobilenetWeights = file } else { options.resnetWeights = file }
            let parse = { (s: String) throws -> [Double] in
                try s.split(separator: ",").map {
                    guard let v = Double($0) else { throw ValidationError("not a number: \($0)") }; return v
                }
            }
            let study = Study(data: data, directory: directory, options: options, progress: progress)
            study.job = job
            _ = try study.sweep(model: model, width: width, strategy: strategy, learningRates: parse(lrs), fractions: parse(fractions))
            progress.line("report: \(out)/sweep.md")
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Write a trained run as an ONNX model (opset 17, BN folded, class names in its metadata) for ONNX Runtime and other runtimes.")

    @Option(name: .customLong("run"), help: "A run folder written by `landuse train`.") var runFolder: String
    @Option(help: "Where to write the model (.onnx).") var output: String
    @Flag(help: "Keep BatchNormalization nodes (default: folded into the convolution before them).") var keepBatchnorm = false

    func run() throws {
        try reporting {
            let trained = try TrainedRun(folder: runFolder)
            let (config, classes) = (trained.config, trained.classes)
            let graph = try Compiler.inference(trained.model, input: [1, 3, config.inputSize, config.inputSize], fuse: false)
            let store = try trained.parameters(for: graph)
            let normalization = config.model == "mobilenet-v2" ? "scaled to [-1, 1]" : "ImageNet mean/std normalised"
            let info = [
                "classes": classes.joined(separator: ","), "kiln.model": config.model,
                "kiln.run": URL(fileURLWithPath: runFolder).lastPathComponent,
                "input": "RGB [N, 3, \(config.inputSize), \(config.inputSize)], \(normalization)",
            ]
            try ONNXExport.write(
                graph, parameters: store, to: URL(fileURLWithPath: output), options: .init(keepBatchNorm: keepBatchnorm, metadata: info))
            print("wrote \(output) (\(classes.count) classes, input \(config.inputSize)²)")
        }
    }
}

/// A run folder written by `landuse train`: its configuration, class names (from the checkpoint's
/// metadata), model and trained weights.
struct TrainedRun {
    let config: RunConfig
    let classes: [String]
    let model: any Layer
    let checkpoint: URL
    let tensors: [(String, Tensor)]

    init(folder: String) throws {
        let directory = URL(fileURLWithPath: folder)
        config = try RunConfig.read(runFolder: directory)
        checkpoint = directory.appendingPathComponent("checkpoint.safetensors")
        let metadata: [String: String]
        (tensors, metadata) = try Safetensors.read(checkpoint)
        guard let classes = metadata["classes"]?.split(separator: ",").map(String.init) else {
            throw DatasetError("\(checkpoint.path): no class names in the checkpoint metadata")
        }
        self.classes = classes
        model = try Zoo.model(config.model, classes: classes.count, width: config.width)
    }

    /// The trained weights for `graph` (strict: every key present with its shape).
    func parameters(for graph: Graph) throws -> ParameterStore {
        let store = ParameterStore()
        try store.load(tensors, for: graph, file: checkpoint.path)
        return store
    }
}
