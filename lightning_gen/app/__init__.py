"""The Kitten Mixer page (seed 003): mix, edit and sample a checkpoint in the browser, served by Gradio."""
