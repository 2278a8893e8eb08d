//! `tflquant convert IN -o OUT`: read → IR → write, no change.

use std::path::PathBuf;

use tflquant::writer::{BufferLayout, WriteOptions};
use tflquant::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Input model (.tflite).
    input: PathBuf,
    /// Output model (.tflite); never the input itself.
    #[arg(short, long)]
    output: PathBuf,
    /// Where tensor data go: inside the flatbuffer (`inline`), after it
    /// (`offset`, as for models above 2 GiB), or `auto` (inline unless too large).
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    buffer_layout: Layout,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Layout {
    Auto,
    Inline,
    Offset,
}

pub fn run(a: Args) -> Result<()> {
    let model = tflquant::read_path(&a.input)?;
    let layout = match a.buffer_layout {
        Layout::Auto => BufferLayout::Auto,
        Layout::Inline => BufferLayout::Inline,
        Layout::Offset => BufferLayout::Offset,
    };
    tflquant::writer::write_path(&model, &a.output, &WriteOptions { layout }).map_err(
        |e| match e {
            Error::FlatbufferTooLarge {
                offset_layout: false,
                ..
            } => Error::Usage(format!("{e}: pass --buffer-layout offset")),
            other => other,
        },
    )?;
    log::info!("wrote {}", a.output.display());
    Ok(())
}
