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
    ("md", "## 2. Build an image embedding model\n\n"
           "`BUILD MODEL … USING SimCLR` trains a self-supervised model (SimCLR, Chen et al. "
           "2020) on the images of the query: it learns to give two random variations of the "
           "same image similar vectors, and different images different ones. No labels are "
           "used. A progress bar shows the epoch, the loss and the speed; the stop button ends "
           "training and keeps nothing. The tutorial trains for a single epoch."),
    ("code", '%%thanosql\nBUILD MODEL my_image_search_model\nUSING SimCLR\nOPTIONS (\n'
             '    image_col="image_path",\n    max_epochs=1,\n    overwrite=True\n    )\n'
             'AS \nSELECT * \nFROM mnist_train'),
    ("code", "LIST MODEL"),
    ("md", "`CONVERT USING` stores the embedding of every test image in a new column, "
           "`my_image_search_model_simclr`, of `mnist_test` (and in a vector index kept in "
           "step with it)."),
    ("code", '%%thanosql\nCONVERT USING my_image_search_model\nOPTIONS (\n'
             '    table_name= "mnist_test",\n    image_col="image_path"\n    )\nAS \n'
             'SELECT * \nFROM mnist_test\n'),
    ("md", "`PRINT EMBEDDING` draws the column as a map: each test image a point on the "
           "plane of the embeddings' first two principal axes, coloured by its digit, with "
           "some of the images at their points. Digits the model tells apart lie apart."),
    ("code", "PRINT EMBEDDING USING my_image_search_model OPTIONS (color_col='label')\n"
             "AS SELECT * FROM mnist_test"),
    ("md", "`EVALUATE` says how good the model is for search: for every test image, its 4 "
           "most similar other test images, and how many share its label (precision@4), "
           "beside the same measure on raw pixels."),
    ("code", "EVALUATE USING my_image_search_model OPTIONS (label_col='label', k=4)\n"
             "AS SELECT * FROM mnist_test"),
    ("md", "## 3. Search images with an image\n\n"
           "`SEARCH IMAGE` adds to every row the cosine similarity between its image and the "
           "query image `923.jpg` (a handwritten 8)."),
    ("code", "%%thanosql\nSEARCH IMAGE images='tutorial_data/mnist_data/test/923.jpg' \n"
             "USING my_image_search_model \nAS \nSELECT * \nFROM mnist_test"),
    ("md", "`PRINT IMAGE` shows the four most similar images (the first is the query itself)."),
    ("code", "%%thanosql\nPRINT IMAGE \nAS (\n    SELECT image_path, "
             "my_image_search_model_simclr_similarity1 \n    FROM (\n        SEARCH IMAGE "
             "images='tutorial_data/mnist_data/test/923.jpg' \n        USING "
             "my_image_search_model \n        AS \n        SELECT * \n        FROM "
             "mnist_test\n        )\n    ORDER BY my_image_search_model_simclr_similarity1 "
             "DESC \n    LIMIT 4\n    )"),
    ("md", "The search is SQL like any other: here the labels of the ten nearest images, "
           "with the second-generation syntax (`top_k`, sorted best first)."),
    ("code", "SELECT image_path, label, search_result AS similarity\n"
             "FROM (SEARCH IMAGE USING my_image_search_model\n"
             "      OPTIONS (search_by='image', "
             "search_input='tutorial_data/mnist_data/test/923.jpg', top_k=10)\n"
             "      AS SELECT * FROM mnist_test)"),
]


def write(cells: list[tuple[str, str]], metadata: dict, name: str) -> None:
    """Write ``cells`` (("md" | "code", text) pairs) as notebooks/``name``."""
    nb = new_notebook(metadata=metadata)
    nb.cells = [new_markdown_cell(text) if kind == "md" else new_code_cell(text)
                for kind, text in cells]
    path = Path(__file__).with_name(name)
    nbformat.write(nb, path)
    print(f"wrote {path}")


def main() -> None:
    write(CELLS, {
        "kernelspec": {"name": "thanosql", "display_name": "ThanoSQL", "language": "sql"},
        "language_info": {"name": "sql", "mimetype": "text/x-sql", "file_extension": ".sql"},
    }, "image_search.ipynb")

if __name__ == "__main__":
    main()
