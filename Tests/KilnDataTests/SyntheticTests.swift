import Foundation
import Testing
@testable import KilnData

struct SyntheticTests {
    @Test func deterministicDistinctAndEveryClassDrawn() throws {
        let a = SyntheticLandUse.render(label: 3, index: 7, size: 32, seed: 1)
        #expect(a.pixels == SyntheticLandUse.render(label: 3, index: 7, size: 32, seed: 1).pixels)
        #expect(a.pixels != SyntheticLandUse.render(label: 3, index: 8, size: 32, seed: 1).pixels)
        let set = SyntheticLandUse.dataset(perClass: 2, size: 32, seed: 1)
        #expect(set.classes.count == 21 && set.samples.count == 42 && set.isSynthetic)
        // Classes differ in their mean colour or texture: no two class prototypes are identical.
        let means = (0..<21).map { label -> [Double] in
            let px = SyntheticLandUse.render(label: label, index: 0, size: 32, seed: 1).pixels
            return (0..<3).map { c in stride(from: c, to: px.count, by: 3).reduce(0.0) { $0 + Double(px[$1]) } / Double(px.count / 3) }
        }
        #expect(Set(means.map { $0.map { Int($0) } }).count > 15)
        let source = SyntheticLandUse.dataset(perClass: 1, size: 16, seed: 1, source: true)
        #expect(Set(source.classes).isDisjoint(with: Set(set.classes)))
        if let dir = ProcessInfo.processInfo.environment["KILN_DUMP_SYNTHETIC"] {
            for label in 0..<21 {
                try ImageDecoder.write(
                    SyntheticLandUse.render(label: label, index: 0, size: 96, seed: 1),
                    to: URL(fileURLWithPath: "\(dir)/\(SyntheticLandUse.classes[label]).png"), format: .png)
            }
        }
    }
}
