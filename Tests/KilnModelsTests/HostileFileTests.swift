import CKernels
import Foundation
import Kiln
import KilnData
import Testing

/// Regression tests for every class of crash the fuzzing campaign found (issue 10): each hostile
/// file is a typed error naming the problem, in process and from the CLI under a 4 GB
/// address-space limit; nothing traps, recurses without bound or runs out of memory.
struct HostileFileTests {
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-hostile-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func everyHostileWeightFileIsATypedErrorNamingTheProblem() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let inputs = try HostileInput.all(in: dir)
        #expect(inputs.count >= 20)
        for input in inputs {
            do {
                let tensors = try WeightFile.read(input.url)
                Issue.record("\(input.name) loaded \(tensors.count) tensors")
            } catch {
                let message = "\(error)"
                #expect(message.contains(input.expected), "\(input.name): \(message)")
                #expect(
                    message.contains(input.url.lastPathComponent) || message.contains("w.bin"),
                    "\(input.name) does not name its file: \(message)")
            }
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
    func everyHostileFileExitsCleanlyFromGraphcUnderAMemoryLimit() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try NPY.write(Tensor(zeros: [1, 3, 32, 32]), to: dir.appendingPathComponent("x.npy"))
        for input in try HostileInput.all(in: dir) {
            let (status, message) = try runTool(
                "graphc",
                [
                    "run", "--model", "basic-cnn", "--weights", input.url.path,
                    "--input", dir.appendingPathComponent("x.npy").path,
                    "--output", dir.appendingPathComponent("y.npy").path,
                ], memoryLimit: 4_000_000_000)
            #expect(status == 1, "\(input.name): exit \(status): \(message)")
            #expect(message.hasPrefix("error: ") && message.contains(input.expected), "\(input.name): \(message)")
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("y.npy").path))
        }
    }

    @Test func imageBombsAreRefusedBeforeAllocating() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bomb = try HostileInput.tiffBomb(in: dir)
        #expect(try Data(contentsOf: bomb).count < 1024)
        do { _ = try ImageDecoder.decode(bomb); Issue.record("decoded a 16384² TIFF") } catch let error as ImageError {
            #expect(error.description.contains("bomb.tif") && error.description.contains("16384x16384"), "\(error)")
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
    func anImageBombStopsLanduseUnderAMemoryLimit() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["farm", "river"] {
            let folder = dir.appendingPathComponent("data/\(name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: try HostileInput.tiffBomb(in: dir.appendingPathComponent("data")), to: folder.appendingPathComponent("bomb.tif"))
            try FileManager.default.removeItem(at: dir.appendingPathComponent("data/bomb.tif"))
        }
        let (status, message) = try runTool(
            "landuse",
            [
                "train", "--data", dir.appendingPathComponent("data").path, "--epochs", "1",
                "--out", dir.appendingPathComponent("run").path,
            ], memoryLimit: 4_000_000_000)
        #expect(status == 1 && message.contains("bomb.tif") && message.contains("over the limit"), "\(status): \(message)")
    }

    @Test func refusedKernelScratchIsReportedNotDereferenced() {
        _ = kn_take_allocation_failure()
        #expect(kn_scratch(Int32(KN_SCRATCH_ACCUMULATOR), 1 << 60) == nil)
        #expect(kn_take_allocation_failure() >= 1 << 62)
        #expect(kn_take_allocation_failure() == 0)
    }
}
