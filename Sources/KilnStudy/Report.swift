import Foundation
import Kiln
import KilnData

/// One overlay of the report's class-activation gallery.
public struct GalleryEntry: Sendable {
    public let file: String
    public let truth: String
    public let predicted: String
    public let probability: Double
}

/// Writes report.md, SVG plots and results.json for a comparison or a sweep. The report states
/// the data (and whether it is synthetic), the weights each row started from, the split seed, the
/// hardware and time per epoch, and answers the notebook's questions from the numbers.
public struct Report {
    public let data: StudyData
    public let directory: URL

    public init(data: StudyData, directory: URL) {
        self.data = data
        self.directory = directory
    }

    func write(_ text: String, _ name: String) throws {
        try Data(text.utf8).writeAtomically(to: directory.appendingPathComponent(name))
    }

    var dataSection: String {
        let d = data.dataset
        let kind =
            d.isSynthetic
            ? "**Synthetic data**: Kiln's embedded procedural land-use set (21 UC Merced class names, generated images), not real aerial imagery."
            : "Real images from `\(d.name)` (ImageFolder layout)."
        return """
            ## Data
            \(kind) \(d.samples.count) images, \(d.classes.count) classes, input \(data.inputSize)×\(data.inputSize) \
            (training: random crop, flips, 90° rotations; evaluation: center crop). Stratified split \
            \(data.split.train.count)/\(data.split.validation.count)/\(data.split.test.count) (train/validation/test, seed \(data.split.seed), \
            saved in `split.json`).\(data.cache.failures.isEmpty ? "" : " Skipped \(data.cache.failures.count) unreadable images.")

            """
    }

    static var hardware: String {
        let cpu =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces)
            ?? "unknown CPU"
        return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(Threads.count) kernel threads"
    }

    static func pct(_ v: Double) -> String { String(format: "%.1f%%", 100 * v) }
    /// Three decimals, or "—" where there is no value.
    static func decimal(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "—" }
    /// A percentage, or "—" where there is no value (an empty validation split).
    static func pct(_ v: Double?) -> String { v.map { pct($0) } ?? "—" }

    /// How the cached rows trained and what the cache saved (empty when no row used it).
    static func featureCacheNotes(_ results: [RunResult]) -> String {
        let cached = results.filter { $0.featureCache != nil }
        guard !cached.isEmpty else { return "" }
        var md =
            "\n*Frozen rows* train their classifier on the frozen backbone's features, computed once per image and augmentation variant (the centre crop under \(cached[0].featureCache!.variants) of the square's symmetries, instead of random crops) and reused every epoch; *ridge* rows fit it in closed form (ridge-regularised least squares on the same features, λ chosen on the validation split; their test loss is that of uncalibrated scores). The feature cache:\n\n"
        md += "| row | backbone passes | reused | prefix time | time saved (est.) | cache |\n|---|---|---|---|---|---|\n"
        for r in cached {
            let c = r.featureCache!
            md += String(
                format: "| %@ | %d | %d | %.1f s | %.1f s | %.1f MiB |\n", r.config.label, c.computed, c.reused, c.computeSeconds,
                c.secondsSaved, c.megabytes)
        }
        return md
    }

    public func writeComparison(_ results: [RunResult], gallery: [GalleryEntry] = []) throws {
        try JSONEncoder.pretty.encode(results).writeAtomically(to: directory.appendingPathComponent("results.json"))
        // Loss on a log scale (one epoch-1 validation loss of 100+ would flatten every other
        // curve), accuracy in % on 0–100, epochs from 1; a run's two curves share its colour.
        let epochs = ChartAxis(label: "epoch", integral: true)
        let percent = ChartAxis(label: "validation accuracy (%)", range: 0...100)
        try write(
            SVG.lineChart(
                title: "Loss per epoch", x: epochs, y: ChartAxis(label: "cross-entropy (log scale)", scale: .log),
                series: results.flatMap { r in
                    [
                        SVG.Series(r.config.label, r.history.map { (Double($0.epoch), $0.trainLoss) }),
                        SVG.Series(
                            r.config.label, r.history.compactMap { e in e.validationLoss.map { (Double(e.epoch), $0) } }, dashed: true),
                    ]
                }, styles: ("training", "validation"), width: 1000), "loss.svg")
        try write(
            SVG.lineChart(
                title: "Validation accuracy per epoch", x: epochs, y: percent,
                series: results.map { r in
                    SVG.Series(r.config.label, r.history.compactMap { e in e.validationAccuracy.map { (Double(e.epoch), 100 * $0) } })
                }),
            "accuracy.svg")
        let byTime = results.map { r in
            var elapsed = 0.0
            return SVG.Series(
                r.config.label,
                r.history.compactMap { e -> (Double, Double)? in
                    elapsed += e.seconds
                    return e.validationAccuracy.map { (elapsed, 100 * $0) }
                })
        }
        try write(
            SVG.lineChart(
                title: "Validation accuracy against training time", x: ChartAxis(label: "training time (s)", floor: 0), y: percent,
                series: byTime),
            "accuracy_vs_time.svg")
        guard let best = results.max(by: { $0.test.accuracy < $1.test.accuracy }) else { return }
        try write(
            SVG.heatmap(
                title: "Confusion matrix: \(best.config.label) (test)", rows: best.classes, columns: best.classes,
                values: best.test.confusion.map { $0.map(Double.init) }, format: "%.0f", rowTitle: "true", columnTitle: "predicted",
                cell: 30),
            "confusion.svg")

        var md = "# Land-use study: transfer learning vs. a basic CNN\n\n" + dataSection
        md +=
            "\n## Setup\nHardware: \(Self.hardware). Each row: same split, \(results.first?.config.epochs ?? 0) epochs, batch \(results.first?.config.batchSize ?? 0), SGD momentum 0.9, weight decay 1e-4, cosine schedule.\n\n"
        md +=
            "| model · strategy | started from | lr | test accuracy | kappa | macro-F1 | test loss | best val. accuracy | epochs to converge | s / epoch | total s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in results {
            md +=
                "| \(r.config.label) | \(r.config.pretraining) | \(r.config.head == "ridge" ? "λ \(r.history.first?.learningRate ?? 0)×" : "\(r.config.learningRate)") | **\(Self.pct(r.test.accuracy))** | \(Self.decimal(r.test.kappa)) | \(Self.decimal(r.test.macroF1)) | \(String(format: "%.3f", r.test.loss)) | "
            md +=
                "\(Self.pct(r.bestValidationAccuracy)) | \(r.epochsToConverge.map(String.init) ?? "—") | \(String(format: "%.1f", r.secondsPerEpoch)) | \(String(format: "%.0f", r.history.map(\.seconds).reduce(0, +))) |\n"
        }
        md += "\n*Epochs to converge*: first epoch whose validation accuracy is within 2 points of the run's best.\n"
        md += Self.featureCacheNotes(results) + "\n"
        md +=
            "![loss](loss.svg)\n\n![accuracy](accuracy.svg)\n\n![accuracy vs time](accuracy_vs_time.svg)\n\n![confusion](confusion.svg)\n\n"
        md += "## Answers\n" + answers(results, best: best)
        md += "\n## Per-class test metrics of the best model (\(best.config.label))\n\n"
        md += "| class | precision | recall (= class accuracy) | F1 | test images |\n|---|---|---|---|---|\n"
        for (c, m) in zip(best.classes, best.test.perClass) {
            md += "| \(c) | \(Self.pct(m.precision)) | \(Self.pct(m.recall)) | \(String(format: "%.3f", m.f1)) | \(m.support) |\n"
        }
        if !gallery.isEmpty { md += gallerySection(gallery, model: best.config.label) }
        try write(md, "report.md")
    }

    /// Where the best model looks: overlays of correct test images and mistakes, four a row.
    func gallerySection(_ gallery: [GalleryEntry], model: String) -> String {
        var md = "\n## Where the network looks (Grad-CAM of \(model))\n\n"
        md += "Class-activation maps of the predicted class on test images (yellow: what drives the prediction most). "
        md += "For each class, the first correctly classified test image and the first mistake, where there is one.\n\n"
        md += "| | | | |\n|---|---|---|---|\n"
        for row in stride(from: 0, to: gallery.count, by: 4) {
            let cells = gallery[row..<min(row + 4, gallery.count)].map { e in
                let verdict = e.truth == e.predicted ? "✓ \(e.truth)" : "✗ \(e.truth) → \(e.predicted)"
                return "![\(e.truth)](\(e.file))<br>\(verdict) (\(Self.pct(e.probability)))"
            }
            md += "| " + (cells + Array(repeating: "", count: 4 - cells.count)).joined(separator: " | ") + " |\n"
        }
        return md
    }

    /// A row started from ImageNet weights (not from the synthetic stand-in or from scratch).
    static func isImageNet(_ r: RunResult) -> Bool { r.config.pretraining.hasPrefix("ImageNet") }
    static func isSynthetic(_ r: RunResult) -> Bool { r.config.pretraining.hasPrefix("synthetic") }

    static func points(_ a: Double, _ b: Double) -> String { String(format: "%+.1f points", 100 * (a - b)) }

    /// The notebook's questions, each answered in a sentence from the numbers, with what the
    /// numbers cannot show said as plainly (synthetic pretraining, the size of the test set).
    func answers(_ results: [RunResult], best: RunResult) -> String {
        var out = ""
        let synthetic = results.filter(Self.isSynthetic), imageNet = results.filter(Self.isImageNet)
        if !synthetic.isEmpty {
            out += "- **Read this first.** The rows marked \"synthetic pretraining\" start from a backbone Kiln pretrained on a "
            out += "synthetic texture task, a stand-in for ImageNet when no ImageNet weights are given; it is not expected to transfer, "
            out += "so these rows say nothing about transfer learning itself. The real study, with ImageNet weights, is in Docs/Study.md.\n"
        }
        if data.dataset.isSynthetic {
            out += "- **The data is synthetic** and much easier than UC Merced: accuracies here are not those of aerial images.\n"
        }
        out +=
            "- **Which strategy wins?** \(best.config.label) (\(best.config.pretraining)) with \(Self.pct(best.test.accuracy)) test accuracy"
        out += best.test.kappa.map { String(format: " (kappa %.3f)", $0) } ?? ""
        out += ".\n"
        if let cnn = results.first(where: { $0.config.model == "basic-cnn" }) {
            func against(_ rows: [RunResult]) -> String {
                rows.map { "\($0.config.label) \(Self.points($0.test.accuracy, cnn.test.accuracy))" }.joined(separator: ", ")
            }
            out += "- **Against the basic CNN** (\(Self.pct(cnn.test.accuracy)), the baseline of Parts 1/2): "
            if !imageNet.isEmpty {
                let better = imageNet.filter { $0.test.accuracy > cnn.test.accuracy }
                out +=
                    better.isEmpty
                    ? "no ImageNet-pretrained row beats it here (\(against(imageNet)))"
                    : "ImageNet pretraining beats it: \(against(imageNet))"
                out += synthetic.isEmpty ? ".\n" : "; synthetic-pretrained rows: \(against(synthetic)).\n"
            } else if !synthetic.isEmpty {
                out +=
                    "only synthetic-pretrained rows here (\(against(synthetic))), so no conclusion about ImageNet transfer can be drawn.\n"
            } else {
                out += "no pretrained row to compare.\n"
            }
        }
        let finetune = results.filter { $0.config.strategy == .finetune }, frozen = results.filter { $0.config.strategy == .frozen }
        for f in finetune {
            guard let z = frozen.first(where: { $0.config.model == f.config.model && $0.config.pretraining == f.config.pretraining }) else {
                continue
            }
            let cheaper = z.secondsPerEpoch < f.secondsPerEpoch ? "the frozen backbone" : "fine-tuning all layers"
            out += "- **\(f.config.label.prefix { $0 != " " }): fine-tune all vs. frozen feature extractor** (\(f.config.pretraining)) — "
            out +=
                "\(Self.pct(f.test.accuracy)) vs. \(Self.pct(z.test.accuracy)) test accuracy (\(Self.points(f.test.accuracy, z.test.accuracy)) for fine-tuning), "
            out += String(
                format: "test loss %.3f vs. %.3f; %.1f vs. %.1f s per epoch (%@ is cheaper); ",
                f.test.loss, z.test.loss, f.secondsPerEpoch, z.secondsPerEpoch, cheaper)
            if let a = f.epochsToConverge, let b = z.epochsToConverge {
                out += "validation accuracy within 2 points of its best after \(a) vs. \(b) epochs. "
            } else {
                out += "no validation split to judge convergence. "
            }
            out += "Fine-tuning adapts the features to aerial images at the cost of a full backward pass; freezing trains only the "
            out += "classifier, cheap per epoch and hard to overfit, but bound to features learned elsewhere.\n"
        }
        if let scratch = results.first(where: { $0.config.model == "resnet18" && $0.config.strategy == .scratch }) {
            let pretrained = finetune.filter { $0.config.model == "resnet18" }
            if let ft = pretrained.first(where: Self.isImageNet) ?? pretrained.first {
                let gain = ft.test.accuracy - scratch.test.accuracy
                out += "- **Does pretraining help ResNet-18?** From scratch \(Self.pct(scratch.test.accuracy)), fine-tuned from "
                out += "\(ft.config.pretraining) \(Self.pct(ft.test.accuracy)): "
                if Self.isImageNet(ft) {
                    out +=
                        gain > 0
                        ? "yes, by \(Self.points(ft.test.accuracy, scratch.test.accuracy)).\n"
                        : "not on this run (\(Self.points(ft.test.accuracy, scratch.test.accuracy))).\n"
                } else {
                    out +=
                        "\(Self.points(ft.test.accuracy, scratch.test.accuracy)) — from a synthetic stand-in, so this does not answer the question; "
                    out += "pass `--resnet-weights` with torchvision's ImageNet file to answer it.\n"
                }
            }
        }
        out +=
            "- **Learning rates and training-set sizes**: `landuse sweep` answers this question (sweep.md, a heat map of test accuracy).\n"
        let perClass = data.split.test.count / max(1, data.dataset.classes.count)
        if data.split.test.isEmpty {
            out += "- **How precise are these numbers?** The test split is empty: the test columns measure nothing.\n"
        } else {
            out += "- **How precise are these numbers?** The test set has \(data.split.test.count) images, about \(perClass) per class: "
            out += String(
                format: "one image moves the overall accuracy by %.2f points and a class's accuracy by %.1f points, ",
                100 / Double(data.split.test.count), 100 / Double(max(1, perClass)))
            out += String(
                format: "and the standard error of an accuracy near %.0f%% is about %.1f points.\n", 100 * best.test.accuracy,
                100 * (best.test.accuracy * (1 - best.test.accuracy) / Double(data.split.test.count)).squareRoot())
        }
        return out
    }

    public func writeSweep(_ results: [RunResult], learningRates: [Double], fractions: [Double]) throws {
        try JSONEncoder.pretty.encode(results).writeAtomically(to: directory.appendingPathComponent("sweep_results.json"))
        func find(_ lr: Double, _ f: Double) -> RunResult? { results.first { $0.config.learningRate == lr && $0.config.fraction == f } }
        let grid = fractions.map { f in learningRates.map { find($0, f)?.test.accuracy ?? 0 } }
        try write(
            SVG.heatmap(
                title: "Test accuracy: learning rate × training-set fraction", rows: fractions.map { "\(Int($0 * 100))% train" },
                columns: learningRates.map { "lr \($0)" }, values: grid, format: "%.2f", rowTitle: "fraction", columnTitle: "learning rate",
                cell: 64),
            "sweep_heatmap.svg")
        var md = "# Learning-rate × data-size sweep: \(results.first?.config.label ?? "")\n\n" + dataSection
        md +=
            "\nHardware: \(Self.hardware). Started from: \(results.first?.config.pretraining ?? "none"). \(results.first?.config.epochs ?? 0) epochs each.\n\n"
        md +=
            "| train fraction | train images | " + learningRates.map { "lr \($0)" }.joined(separator: " | ") + " |\n|---|---|"
            + learningRates.map { _ in "---|" }.joined() + "\n"
        for f in fractions {
            md +=
                "| \(Int(f * 100))% | \(find(learningRates[0], f)?.trainImages ?? 0) | "
                + learningRates.map { lr in find(lr, f).map { Self.pct($0.test.accuracy) } ?? "—" }.joined(separator: " | ") + " |\n"
        }
        md += "\n![sweep](sweep_heatmap.svg)\n\n## Answers\n"
        for f in fractions {
            if let best = learningRates.compactMap({ find($0, f) }).max(by: { $0.test.accuracy < $1.test.accuracy }) {
                md +=
                    "- With \(Int(f * 100))% of the training set the best learning rate is \(best.config.learningRate) (\(Self.pct(best.test.accuracy))).\n"
            }
        }
        for lr in learningRates {
            let accs = fractions.compactMap { find(lr, $0)?.test.accuracy }
            if let lo = accs.first, let hi = accs.last {
                md +=
                    "- At lr \(lr), going from \(Int(fractions.first! * 100))% to \(Int(fractions.last! * 100))% of the data changes test accuracy by \(String(format: "%+.1f", 100 * (hi - lo))) points.\n"
            }
        }
        try write(md, "sweep.md")
    }
}
