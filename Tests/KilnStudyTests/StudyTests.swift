import Foundation
import Kiln
import KilnData
import KilnModels
import Testing
@testable import KilnStudy

struct StudyTests {
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-study-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func tinyData(_ dir: URL) throws -> StudyData {
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        return try StudyData.prepare(
            root: nil, syntheticPerClass: 5, inputSize: 16, seed: 3, skipBad: false, directory: dir, progress: progress)
    }

    @Test func evaluationCountsAccuracyLossAndConfusion() {
        var e = Evaluation(classes: ["a", "b"])
        e.add(logits: Tensor(shape: [3, 2], values: [2, 0, 0, 2, 3, 1]), labels: Tensor(shape: [3], int64s: [0, 1, 1]))
        #expect(e.confusion == [[1, 0], [1, 1]])
        #expect(abs(e.accuracy - 2.0 / 3) < 1e-12)
        #expect(e.perClassAccuracy == [1, 0.5])
        let expected = (log(1 + exp(-2.0)) * 2 + (log(exp(3.0) + exp(1.0)) - 1)) / 3
        #expect(abs(e.loss - expected) < 1e-6)
    }

    @Test func trainerCheckpointsAndResumes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try tinyData(dir)
        var config = RunConfig(model: "basic-cnn", width: 0.25, strategy: .scratch)
        (config.epochs, config.batchSize, config.inputSize, config.learningRate) = (1, 16, 16, 0.05)
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        let first = try Trainer(
            config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("run"), progress: progress
        ).run()
        #expect(first.history.count == 1)
        config.epochs = 2
        let resumed = try Trainer(
            config: config, cache: data.cache, split: data.split, directory: dir.appendingPathComponent("run"), progress: progress
        )
        .run(resume: true)
        #expect(resumed.history.map(\.epoch) == [1, 2])
        #expect(resumed.history[0].trainLoss == first.history[0].trainLoss)
        let (_, metadata) = try Safetensors.read(dir.appendingPathComponent("run/checkpoint.safetensors"))
        #expect(metadata["epoch"] == "2" && metadata["classes"]?.split(separator: ",").count == 21)
        #expect(resumed.test.count == data.split.test.count)
    }

    /// confusion [[2, 1, 0], [0, 3, 1], [1, 0, 2]] by hand: p_o = 0.7, p_e = (3·3 + 4·4 + 3·3)/100 = 0.34,
    /// kappa = 0.36/0.66; precision = recall = F1 = (2/3, 3/4, 2/3), macro-F1 = 25/36
    /// (scikit-learn's cohen_kappa_score and f1_score(average="macro") give the same).
    @Test func kappaAndF1MatchHandComputedValues() throws {
        var e = Evaluation(classes: ["a", "b", "c"])
        let pairs = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 1), (1, 2), (2, 0), (2, 2), (2, 2)]
        var logits = [Float](repeating: 0, count: pairs.count * 3)
        for (i, pair) in pairs.enumerated() { logits[i * 3 + pair.1] = 1 }
        e.add(
            logits: Tensor(shape: [pairs.count, 3], values: logits), labels: Tensor(shape: [pairs.count], int64s: pairs.map { Int64($0.0) })
        )
        #expect(e.confusion == [[2, 1, 0], [0, 3, 1], [1, 0, 2]])
        #expect(abs(e.kappa! - 0.36 / 0.66) < 1e-12)
        #expect(abs(e.macroF1! - 25.0 / 36) < 1e-12)
        let expected = [2.0 / 3, 0.75, 2.0 / 3]
        for (m, x) in zip(e.perClass, expected) {
            #expect(abs(m.precision - x) < 1e-12 && abs(m.recall - x) < 1e-12 && abs(m.f1 - x) < 1e-12)
        }
        #expect(e.perClass.map(\.support) == [3, 4, 3])
        // A perfect classifier has kappa 1; an empty evaluation has none, and its JSON carries no NaN.
        var perfect = Evaluation(classes: ["a", "b"])
        perfect.add(logits: Tensor(shape: [2, 2], values: [1, 0, 0, 1]), labels: Tensor(shape: [2], int64s: [0, 1]))
        #expect(perfect.kappa == 1 && perfect.macroF1 == 1)
        let empty = Evaluation(classes: ["a", "b"])
        #expect(empty.kappa == nil && empty.macroF1 == nil)
        let json = String(decoding: try JSONEncoder().encode(e), as: UTF8.self)
        #expect(json.contains("\"kappa\"") && json.contains("\"macroF1\"") && json.contains("\"perClass\""))
        let decoded = try JSONDecoder().decode(Evaluation.self, from: Data(json.utf8))
        #expect(decoded.confusion == e.confusion && decoded.kappa == e.kappa)
        _ = try JSONEncoder().encode(empty)
    }

    /// For a pooled linear head the raw class-activation map averages to the logit minus the
    /// class's bias: the map is made of the right activations and the right classifier row.
    @Test(arguments: ["basic-cnn", "resnet18", "mobilenet-v2"])
    func classActivationMapsAverageToTheLogit(_ model: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try tinyData(dir)
        var config = RunConfig(model: model, width: model == "basic-cnn" ? 0.25 : model == "resnet18" ? 0.125 : 0.35, strategy: .scratch)
        (config.epochs, config.batchSize, config.inputSize) = (1, 16, 64)
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        let run = dir.appendingPathComponent("run")
        let cache = try ImageCache(data.dataset, ids: data.split.train + data.split.validation, baseSize: config.baseSize, skipBad: false)
        _ = try Trainer(config: config, cache: cache, split: data.split, directory: run, progress: progress).run()
        let maps = try ClassActivationMap(runFolder: run)
        let (input, crop) = maps.prepare(cache.images[data.split.train[0]]!)
        let e = try maps.explain(input)
        let (tensors, _) = try Safetensors.read(run.appendingPathComponent("checkpoint.safetensors"))
        let bias = tensors.first { $0.0 == "\(config.classifier).bias" }!.1.floats[e.predicted]
        let mean = e.raw.reduce(0, +) / Float(e.raw.count)
        #expect(
            abs(mean + bias - e.logits[e.predicted]) <= 1e-4 * max(1, abs(e.logits[e.predicted])),
            "\(mean) + \(bias) vs \(e.logits[e.predicted])")
        #expect(e.heat.allSatisfy { $0 >= 0 && $0 <= 1 } && e.heat.contains(1))
        let overlay = ClassActivationMap.overlay(crop, e)
        #expect(overlay.width == 64 && overlay.height == 64)
        if model == "basic-cnn" {
            // The report's gallery: one correct image and one mistake per class at most, all written.
            var split = data.split
            split.test = split.train
            let study = Study(
                data: StudyData(dataset: data.dataset, split: split, cache: cache, inputSize: 64, splitURL: data.splitURL),
                directory: dir, options: Study.Options(), progress: progress)
            let gallery = try study.activationGallery(run)
            #expect(!gallery.isEmpty && gallery.count <= 2 * data.dataset.classes.count)
            #expect(gallery.allSatisfy { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0.file).path) })
        }
    }

    /// Against scikit-learn on a random 21-class prediction (Tests/Fixtures/metrics_reference.py).
    @Test func metricsMatchScikitLearn() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/metrics/sklearn.json")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let classes = reference["classes"] as! Int, truth = reference["truth"] as! [Int], predicted = reference["predicted"] as! [Int]
        var e = Evaluation(classes: (0..<classes).map(String.init))
        var logits = [Float](repeating: 0, count: truth.count * classes)
        for (i, p) in predicted.enumerated() { logits[i * classes + p] = 1 }
        e.add(
            logits: Tensor(shape: [truth.count, classes], values: logits),
            labels: Tensor(shape: [truth.count], int64s: truth.map(Int64.init)))
        #expect(abs(e.kappa! - (reference["kappa"] as! Double)) < 1e-12)
        #expect(abs(e.macroF1! - (reference["macro_f1"] as! Double)) < 1e-12)
        for (name, ours) in [
            ("precision", e.perClass.map(\.precision)), ("recall", e.perClass.map(\.recall)), ("f1", e.perClass.map(\.f1)),
        ] {
            let theirs = reference[name] as! [Double]
            #expect(zip(ours, theirs).allSatisfy { abs($0 - $1) < 1e-12 }, "\(name)")
        }
        #expect(e.perClass.map(\.support) == reference["support"] as! [Int])
    }

    @Test func anEmptyValidationSplitIsNoScore() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try tinyData(dir)
        var split = data.split
        split.train += split.validation
        split.validation = []
        var config = RunConfig(model: "basic-cnn", width: 0.25, strategy: .scratch)
        (config.epochs, config.batchSize, config.inputSize) = (1, 16, 16)
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        let result = try Trainer(
            config: config, cache: data.cache, split: split, directory: dir.appendingPathComponent("run"), progress: progress
        ).run()
        #expect(result.history[0].validationAccuracy == nil && result.history[0].validationLoss == nil)
        #expect(result.bestValidationAccuracy == nil && result.epochsToConverge == nil)
        let json = try String(contentsOf: dir.appendingPathComponent("run/result.json"), encoding: .utf8)
        #expect(!json.contains("validationAccuracy") && !json.lowercased().contains("nan"))
        try Report(data: data, directory: dir).writeComparison([result])
        let report = try String(contentsOf: dir.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(report.contains("| — | — |"), "\(report)")
    }

    @Test func compareWritesAReportWithEveryRowAndPlot() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try tinyData(dir)
        var options = Study.Options()
        (options.epochs, options.batchSize, options.pretrainEpochs, options.pretrainPerClass) = (1, 16, 1, 4)
        options.only = ["basic-cnn", "mobilenet-v2"]
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        let results = try Study(data: data, directory: dir, options: options, progress: progress).compare()
        #expect(
            results.map(\.config.label) == [
                "basic-cnn · scratch", "mobilenet-v2-0.35 · finetune", "mobilenet-v2-0.35 · frozen", "mobilenet-v2-0.35 · frozen · ridge",
            ])
        // The frozen row trained on cached features, and the ridge row reused them.
        #expect(results[2].featureCache != nil && results[3].featureCache!.reused > 0)
        #expect(results[3].featureCache!.computed < results[2].featureCache!.computed)
        #expect(results[1].config.pretraining.contains("synthetic pretraining"))
        let report = try String(contentsOf: dir.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(
            report.contains("Synthetic data") && report.contains("| mobilenet-v2-0.35 · frozen |") && report.contains("Which strategy wins")
        )
        // The demo's transfer rows start from synthetic pretraining: the report says so, and draws no ImageNet conclusion.
        #expect(report.contains("not expected to transfer") && report.contains("no conclusion about ImageNet transfer"))
        #expect(report.contains("| kappa | macro-F1 |"))
        for plot in ["loss.svg", "accuracy.svg", "accuracy_vs_time.svg", "confusion.svg"] {
            let svg = try String(contentsOf: dir.appendingPathComponent(plot), encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.contains("polyline") || plot == "confusion.svg", "\(plot)")
        }
        let decoded = try JSONDecoder().decode([RunResult].self, from: Data(contentsOf: dir.appendingPathComponent("results.json")))
        #expect(decoded.count == 4)
        #expect(report.contains("feature cache"), "the report says what the cache saved")
    }

    @Test func sweepWritesAHeatmap() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try tinyData(dir)
        var options = Study.Options()
        (options.epochs, options.batchSize) = (1, 16)
        let progress = ProgressReporter(interactive: false)
        progress.quiet = true
        let results = try Study(data: data, directory: dir, options: options, progress: progress)
            .sweep(model: "basic-cnn", width: 0.25, strategy: .scratch, learningRates: [0.1, 0.01], fractions: [0.5, 1])
        #expect(results.count == 4)
        #expect(results.filter { $0.config.fraction == 0.5 }.allSatisfy { $0.trainImages < data.split.train.count })
        let md = try String(contentsOf: dir.appendingPathComponent("sweep.md"), encoding: .utf8)
        #expect(md.contains("| 50% |") && md.contains("best learning rate"))
        #expect(try String(contentsOf: dir.appendingPathComponent("sweep_heatmap.svg"), encoding: .utf8).contains("<rect"))
    }
}
