import Foundation
import Testing
@testable import KilnData

struct SyntheticTests {
    @Test func deterministicAndDistinct() throws {
        let a = SyntheticLandUse.render(label: 3, index: 7, size: 32, seed: 1)
        let b = SyntheticLandUse.render(label: 3, index: 7, size: 32, seed: 1)
        let c = SyntheticLandUse.render(label: 3, index: 8, size: 32, seed: 1)
        #expect(a.pixels == b.pixels)
        #expect(a.pixels != c.pixels)
        let set = SyntheticLandUse.dataset(perClass: 2, size: 32, seed: 1)
        #expect(set.classes.count == 21 && set.samples.count == 42 && set.isSynthetic)
        if let dir = ProcessInfo.processInfo.environment["KILN_DUMP_SYNTHETIC"] {
            for label in 0..<21 {
                try ImageDecoder.write(SyntheticLandUse.render(label: label, index: 0, size: 96, seed: 1),
                                       to: URL(fileURLWithPath: "\(dir)/\(SyntheticLandUse.classes[label]).png"), format: .png)
            }
        }
    }
}
