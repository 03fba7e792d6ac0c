// ThanoSQL highlighting for JupyterLab: registers the editor language "thanosql" that the
// kernel's language_info names: SQL, with the words of the ThanoSQL statements as keywords.
// The words come from the kernel's statement registry (keywords.json is written from it
// when the extension is built), so they are never a second list to keep in step.
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';

import thanosqlWords from './keywords.json';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'thanosql-highlight:plugin',
  description: 'Highlights ThanoSQL cells: SQL with the ThanoSQL statements as keywords.',
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: (app: JupyterFrontEnd, languages: IEditorLanguageRegistry) => {
    languages.addLanguage({
      name: 'thanosql',
      displayName: 'ThanoSQL',
      mime: 'text/x-thanosql',
      extensions: [],
      async load() {
        // PostgreSQL's dialect knows SQL's words and $$ strings, as the kernel does
        const { sql, SQLDialect, PostgreSQL } = await import('@codemirror/lang-sql');
        const words = (thanosqlWords as string[]).map(w => w.toLowerCase()).join(' ');
        const dialect = SQLDialect.define({
          ...PostgreSQL.spec,
          keywords: `${PostgreSQL.spec.keywords ?? ''} ${words}`
        });
        return sql({ dialect, upperCaseKeywords: true });
      }
    });
  }
};

export default plugin;
