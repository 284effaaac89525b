//! `FeatureConfig::scratch_bytes` against the heap really used: a counting allocator records the
//! peak of what one thread allocates while it extracts one image (each on a fresh thread, so no
//! buffer is left from an earlier image), for every extractor at small and large sizes. The
//! bound must hold, and stay within a small factor of the truth, or a service that admits
//! requests by it would either run out of memory or refuse work it could do. What a thread still
//! holds after a large image (buffers kept for the next one) stays bounded too.

// A global allocator is an unsafe trait: it forwards to the system allocator and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ferrocluster_core::features::{ColourHistogram, FeatureConfig, Hog, Lbp, LbpMethod, Pixels};
use ferrocluster_core::image::ImageView;

/// The system allocator, counting per thread the bytes held and their peak.
struct Counting;

thread_local! {
    static HELD: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = HELD.try_with(|held| {
            held.set(held.get() + layout.size() as i64);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(held.get())));
        });
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = HELD.try_with(|held| held.set(held.get() - layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The peak of the heap one thread allocates while extracting one RGB image at the config's
/// size, the extractor (its tables) built beforehand, and what the thread still holds after.
fn measured(config: &FeatureConfig) -> (u64, u64) {
    let [height, width] = config.size;
    let pixels: Vec<f32> = (0..height * width * 3).map(|i| ((i * 7919) % 256) as f32).collect();
    let image = ImageView::new(height, width, 3, &pixels).unwrap();
    let extractor = config.extractor().unwrap();
    let mut out = vec![0f32; config.dim()];
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                HELD.with(|held| held.set(0));
                PEAK.with(|peak| peak.set(0));
                extractor.extract(image, &mut out).unwrap();
                (PEAK.with(Cell::get) as u64, HELD.with(Cell::get) as u64)
            })
            .join()
            .unwrap()
    })
}

fn configs() -> Vec<(&'static str, FeatureConfig)> {
    let none = FeatureConfig { hog: None, ..FeatureConfig::default() };
    let lbp = |points, radius, method| FeatureConfig { lbp: Some(Lbp { points, radius, method }), ..none.clone() };
    let hog = |ppc: usize, cpb: usize, transform_sqrt| Hog {
        pixels_per_cell: [ppc, ppc],
        cells_per_block: [cpb, cpb],
        transform_sqrt,
        ..Hog::default()
    };
    let mut configs = Vec::new();
    for side in [64, 1024] {
        let size = [side, side];
        configs.extend([
            ("default HOG", FeatureConfig { size, ..FeatureConfig::default() }),
            ("HOG, 1-pixel cells", FeatureConfig { size, hog: Some(hog(1, 1, false)), ..none.clone() }),
            ("grey HOG, sqrt", FeatureConfig { size, grey: true, hog: Some(hog(4, 3, true)), ..none.clone() }),
            ("LBP 8, 1", FeatureConfig { size, ..lbp(8, 1.0, LbpMethod::Uniform) }),
            ("LBP 24, 3", FeatureConfig { size, ..lbp(24, 3.0, LbpMethod::Uniform) }),
            ("LBP 16, 2 default", FeatureConfig { size, ..lbp(16, 2.0, LbpMethod::Default) }),
            ("LBP 32, wide radius", FeatureConfig { size, ..lbp(32, 1e6, LbpMethod::NriUniform) }),
            (
                "joint colour",
                FeatureConfig { size, colour: Some(ColourHistogram { bins: 64, joint: true }), ..none.clone() },
            ),
            ("grey pixels", FeatureConfig { size, pixels: Some(Pixels { grey: true }), ..none.clone() }),
            (
                "everything",
                FeatureConfig {
                    size,
                    hog: Some(hog(8, 2, true)),
                    lbp: Some(Lbp::default()),
                    colour: Some(ColourHistogram::default()),
                    pixels: Some(Pixels::default()),
                    ..none.clone()
                },
            ),
        ]);
    }
    configs
}

#[test]
fn scratch_bytes_bounds_the_heap_one_image_takes() {
    for (name, config) in configs() {
        let (bound, (peak, kept)) = (config.scratch_bytes(), measured(&config));
        eprintln!("CAL {name} {:?} bound {bound} peak {peak} ratio {:.2}", config.size, bound as f64 / peak as f64);
        assert!(peak <= bound, "{name} at {:?}: {peak} bytes allocated, bound {bound}", config.size);
        // Not so loose that admission by it refuses what fits: within 4× (plus 1 MiB for the
        // small per-call vectors of tiny images).
        assert!(bound <= 4 * peak + (1 << 20), "{name} at {:?}: bound {bound} for {peak} bytes", config.size);
        // A 1024×1024 image's LBP planes (up to 150 MB) are given back; small ones may stay.
        assert!(kept <= 65 << 20, "{name} at {:?}: {kept} bytes kept after the image", config.size);
    }
}
