import Foundation
import Testing
@testable import Kiln

struct NPYTests {
    @Test func roundTripsFloatAndInt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-npy-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = randomTensor([2, 3, 4], seed: 1)
        try NPY.write(f, to: dir.appendingPathComponent("f.npy"))
        let g = try NPY.read(dir.appendingPathComponent("f.npy"))
        #expect(g.shape == f.shape && g.scalars == f.scalars)
        let i = Tensor(shape: [5], int64s: [1, -2, 3, 4, 5])
        try NPY.write(i, to: dir.appendingPathComponent("i.npy"))
        #expect(try NPY.read(dir.appendingPathComponent("i.npy")).int64Scalars == [1, -2, 3, 4, 5])
    }

    @Test func corruptFilesAreTypedErrors() throws {
        #expect(throws: NPYError.self) { try NPY.decode(Data("not numpy".utf8)) }
        var truncated = NPY.encode(randomTensor([10], seed: 1))
        truncated.removeLast(8)
        #expect(throws: NPYError.self) { try NPY.decode(truncated) }
        #expect(throws: NPYError.self) { try NPY.read(URL(fileURLWithPath: "/nonexistent/x.npy")) }
    }
}
