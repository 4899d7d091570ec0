import Foundation
import KilnData
import Testing

/// The landuse binary on bad data: a corrupt JPEG stops the run with its name (exit 1) or, with
/// --skip-bad, is reported and skipped.
struct LanduseCLITests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func run(_ args: [String]) throws -> (Int32, String) {
        let binary = builtToolsFolder.appendingPathComponent("landuse")
        guard FileManager.default.fileExists(atPath: binary.path) else {
            Issue.record("landuse is not built at \(binary.path): build it first (`make test` does)")
            return (-1, "")
        }
        return try runToCompletion(binary, args)
    }

    @Test func corruptImageStopsOrIsSkipped() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cli-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        for (label, name) in ["forest", "river"].enumerated() {
            let dir = root.appendingPathComponent("data/\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for i in 0..<6 {
                try ImageDecoder.write(
                    SyntheticLandUse.render(label: [7, 16][label], index: i, size: 20, seed: 1),
                    to: dir.appendingPathComponent("\(i).jpg"), format: .jpeg)
            }
        }
        let good = try Data(contentsOf: root.appendingPathComponent("data/river/0.jpg"))
        try good.prefix(good.count / 3).write(to: root.appendingPathComponent("data/river/truncated.jpg"))
        let common = [
            "train", "--data", root.appendingPathComponent("data").path, "--input-size", "16", "--epochs", "1",
            "--batch", "4", "--model", "basic-cnn", "--out", root.appendingPathComponent("run").path,
        ]
        let (status, output) = try run(common)
        #expect(status == 1, "\(output)")
        #expect(output.contains("truncated.jpg"))
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("run/checkpoint.safetensors").path))
        let (status2, output2) = try run(common + ["--skip-bad"])
        #expect(status2 == 0, "\(output2)")
        #expect(output2.contains("skipped unreadable image") && output2.contains("truncated.jpg"))
        #expect(output2.contains("test accuracy"))
        let (status3, output3) = try run([
            "predict", "--run", root.appendingPathComponent("run").path, root.appendingPathComponent("data/forest/1.jpg").path,
        ])
        #expect(status3 == 0 && output3.contains("forest") && output3.contains("%"), "\(output3)")
    }

    /// An ONNX model (Tests/Fixtures/onnx/tinynet.onnx) trains with a frozen backbone and a new
    /// head for the data's classes, and the run exports back to ONNX with its class names.
    @Test func onnxModelTrainsFrozenAndExports() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cli-onnx-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        for (label, name) in ["forest", "river", "beach"].enumerated() {
            let dir = root.appendingPathComponent("data/\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for i in 0..<8 {
                try ImageDecoder.write(
                    SyntheticLandUse.render(label: [7, 16, 2][label], index: i, size: 20, seed: 1),
                    to: dir.appendingPathComponent("\(i).png"), format: .png)
            }
        }
        let model = Self.packageRoot.appendingPathComponent("Tests/Fixtures/onnx/tinynet.onnx").path
        let run = root.appendingPathComponent("run").path
        let (status, output) = try self.run([
            "train", "--data", root.appendingPathComponent("data").path, "--input-size", "16", "--epochs", "2", "--batch", "4",
            "--model", model, "--strategy", "frozen", "--out", run,
        ])
        #expect(status == 0, "\(output)")
        #expect(FileManager.default.fileExists(atPath: run + "/checkpoint.safetensors"))
        let exported = root.appendingPathComponent("m.onnx").path
        let (exportStatus, exportOutput) = try self.run(["export", "--run", run, "--output", exported])
        #expect(exportStatus == 0, "\(exportOutput)")
        #expect(exportOutput.contains("3 classes"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: exported))
        #expect(String(decoding: bytes, as: UTF8.self).contains("beach,forest,river"))

        // The same file as rows of the study, beside (here: instead of, --only) the zoo's.
        let study = root.appendingPathComponent("compare").path
        let (compareStatus, compareOutput) = try self.run([
            "compare", "--data", root.appendingPathComponent("data").path, "--input-size", "16", "--epochs", "1", "--batch", "4",
            "--model", model, "--strategy", "frozen", "finetune", "--only", "tinynet", "--out", study,
        ])
        #expect(compareStatus == 0, "\(compareOutput)")
        let report = try String(contentsOfFile: study + "/report.md", encoding: .utf8)
        for row in ["tinynet · frozen", "tinynet · finetune"] { #expect(report.contains(row), "\(row) missing from the report") }
        #expect(report.contains("the weights in tinynet.onnx"))
        #expect(report.contains("](cam/"), "no class-activation gallery for the imported model")
        let (refused, refusal) = try self.run(["compare", "--model", "resnet18", "--out", study])
        #expect(refused != 0 && refusal.contains("ONNX files"), "\(refusal)")
    }
}

/// The folder of the package's built tools: the one holding this test binary
/// (.build/<triple>/<debug|release>), so tests run the tools of the same configuration.
let builtToolsFolder: URL = {
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var folder = runner.deletingLastPathComponent()
    if folder.pathExtension == "xctest" || folder.lastPathComponent == "MacOS" {  // bundle layouts
        while folder.pathExtension != "xctest" && folder.path != "/" { folder = folder.deletingLastPathComponent() }
        folder = folder.deletingLastPathComponent()
    }
    return folder
}()

/// Runs `executable` with `arguments` to its end: its exit status and its stdout and stderr together.
func runToCompletion(_ executable: URL, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    (process.executableURL, process.arguments) = (executable, arguments)
    let pipe = Pipe()
    (process.standardOutput, process.standardError) = (pipe, pipe)
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}
