"""Writes notebooks/image_search.ipynb: the tutorial's flow, cell for cell, in English."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", "# Image search with ThanoSQL\n\n"
           "The original ThanoSQL tutorial, *searching images with an image* (이미지로 이미지 "
           "검색하기), run locally: no account, no server, no token. The cells below are the "
           "tutorial's own, unchanged (the `%%thanosql` headers and the token line included)."),
    ("md", "## 0. Prepare the data\n\n"
           "The original read the data from a ThanoSQL server. Here `GET THANOSQL DATASET` writes "
           "it next to this notebook from real MNIST digits shipped inside a Python package: "
           "1,000 training and 200 test images, 28×28 grayscale, with their labels."),
    ("code", "GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)"),
    ("md", "The tutorial's first lines connected to the ThanoSQL server. This kernel accepts "
           "them and says it does not need them."),
    ("code", "%load_ext thanosql"),
    ("code", "%thanosql API_TOKEN=<발급받은_API_TOKEN>"),
    ("md", "`COPY` loads each CSV into a table of the local database; `overwrite=True` replaces "
           "a table of the same name."),
    ("code", '%%thanosql\nCOPY mnist_train\nOPTIONS(overwrite=True)\n'
             'FROM "tutorial_data/mnist_data/mnist_train.csv"'),
    ("code", '%%thanosql\nCOPY mnist_test\nOPTIONS(overwrite=True) \n'
             'FROM "tutorial_data/mnist_data/mnist_test.csv"'),
    ("md", "## 1. Look at the data\n\n"
           "`mnist_train` holds the path of each image file, its name and its label (the digit)."),
    ("code", "%%thanosql\nSELECT * \nFROM mnist_train \nLIMIT 5"),
    ("md", "Plain SQL works on these tables as on any others, for example how many images "
           "there are of each digit:"),
    ("code", "SELECT label, count(*) AS images\nFROM mnist_train\nGROUP BY label\n"
             "ORDER BY label"),
]


def main() -> None:
    nb = new_notebook(metadata={
        "kernelspec": {"name": "thanosql", "display_name": "ThanoSQL", "language": "sql"},
        "language_info": {"name": "sql", "mimetype": "text/x-sql", "file_extension": ".sql"},
    })
    nb.cells = [new_markdown_cell(text) if kind == "md" else new_code_cell(text)
                for kind, text in CELLS]
    path = Path(__file__).with_name("image_search.ipynb")
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
