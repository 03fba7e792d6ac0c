"""Writes notebooks/thanosql_in_python.ipynb: ThanoSQL in the stock Python kernel, through
``%load_ext thanosql``, mixed with pandas and numpy."""

from make_notebook import write  # the sibling script: run as python notebooks/<this>.py

SEARCH_923 = ("(SEARCH IMAGE images='tutorial_data/mnist_data/test/923.jpg'\n"
              "      USING digit_search AS SELECT * FROM digits_test)")

CELLS = [
    ("md", "# ThanoSQL in a Python notebook\n\n"
           "This notebook runs in the stock **Python 3** kernel. `%load_ext thanosql` adds the "
           "magics `%thanosql` (one statement) and `%%thanosql` (a cell of statements): the "
           "same statements, engine and settings as the ThanoSQL kernel, with rows coming back "
           "as pandas DataFrames, so ThanoSQL mixes with pandas, numpy and your own Python."),
    ("code", "%load_ext thanosql"),
    ("code", "%%thanosql\nGET THANOSQL DATASET mnist_data OPTIONS (overwrite=True);\n"
             "COPY digits OPTIONS (overwrite=True) "
             "FROM 'tutorial_data/mnist_data/mnist_train.csv';\n"
             "COPY digits_test OPTIONS (overwrite=True) "
             "FROM 'tutorial_data/mnist_data/mnist_test.csv'"),
    ("md", "A statement's rows are a DataFrame: keep them in a variable and go on in pandas."),
    ("code", "train = %thanosql SELECT * FROM digits\n"
             "train.groupby('label').size().rename('images').to_frame().T"),
    ("md", "Long work shows a progress bar that updates in place (the stop button stops it and "
           "keeps nothing). `name <<` keeps a cell's rows in a variable instead of showing "
           "them; an embedding column holds one numpy array per row."),
    ("code", "%%thanosql\nBUILD MODEL digit_search USING SimCLR "
             "OPTIONS (max_epochs=1, overwrite=True)\nAS SELECT * FROM digits"),
    ("code", "%%thanosql test <<\nCONVERT USING digit_search AS SELECT * FROM digits_test"),
    ("code", "import numpy as np\n\nvectors = np.stack(test['digit_search_simclr'])\n"
             "vectors.shape, vectors.dtype"),
    ("md", "Python values go into a statement as bound parameters: `:name` is the variable "
           "`name`, sent to the database as a value, never pasted into the SQL text. A list "
           "binds one value per item, for `IN :name`."),
    ("code", "wanted = [3, 8]\nk = 5"),
    ("code", "%%thanosql\nSELECT image_path, label, digit_search_simclr_similarity1 AS "
             f"similarity\nFROM {SEARCH_923}\nWHERE label IN :wanted\n"
             "ORDER BY similarity DESC\nLIMIT :k"),
    ("md", "`PRINT IMAGE` shows the images, each with its caption."),
    ("code", "%%thanosql\nPRINT IMAGE AS\nSELECT image_path, digit_search_simclr_similarity1\n"
             f"FROM {SEARCH_923}\nORDER BY digit_search_simclr_similarity1 DESC LIMIT 4"),
    ("md", "And back in pandas: how many of the ten images nearest to `923.jpg` (an 8, left "
           "out) are eights?"),
    ("code", "near = %thanosql SELECT label FROM (SEARCH IMAGE USING digit_search OPTIONS "
             "(search_by='image', search_input='tutorial_data/mnist_data/test/923.jpg', "
             "top_k=11) AS SELECT * FROM digits_test)\n"
             "(near['label'].iloc[1:] == 8).sum()"),
]


def main() -> None:
    write(CELLS, {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python"},
    }, "thanosql_in_python.ipynb")

if __name__ == "__main__":
    main()
