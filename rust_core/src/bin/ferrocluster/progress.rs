//! Progress bars on stderr (hidden with --quiet or when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress bars, or hidden ones.
#[derive(Debug)]
pub struct Bars {
    visible: bool,
}

impl Bars {
    pub fn new(visible: bool) -> Self {
        Bars { visible }
    }

    /// A bar for `total` steps of `what`.
    pub fn bar(&self, total: usize, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(
            Some(total as u64),
            if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_owned());
        bar
    }
}
